// Command grafana-dashboard-check validates Grafana dashboard JSON files against Grafana's own
// dashboard schema, as compiled into the Grafana Foundation SDK (types generated from the
// dashboard kind and from each core panel plugin's and data source's schema).
//
// Why: no Grafana server can be installed on the project's machines, so this is what stands in
// for loading the dashboard into one. The check is strict: an unknown or misspelt field, a value
// of the wrong type, a required field missing, a panel type or data source type Grafana does not
// ship, or options that do not fit the panel type's schema all fail it.
//
// Usage: grafana-dashboard-check FILE... ; exit 0 when every file is valid, 1 otherwise.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: grafana-dashboard-check FILE...")
		os.Exit(2)
	}
	// Registers every core panel type's options/fieldConfig schema and every core data source's
	// query schema, so panels and targets are decoded strictly by their own kind.
	plugins.RegisterDefaultPlugins()
	failed := false
	for _, path := range os.Args[1:] {
		if err := checkFile(path); err != nil {
			failed = true
			fmt.Printf("%s: INVALID\n%v\n", path, err)
			continue
		}
		fmt.Printf("%s: valid\n", path)
	}
	if failed {
		os.Exit(1)
	}
}

// checkFile decodes one dashboard strictly, then applies the schema's value constraints. Panels
// are decoded one by one (see checkPanels), the rest of the dashboard in one go.
func checkFile(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	fields := map[string]json.RawMessage{}
	if err := json.Unmarshal(raw, &fields); err != nil {
		return err
	}
	panels := fields["panels"]
	delete(fields, "panels")
	rest, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	var dash dashboard.Dashboard
	if err := orNil(dash.UnmarshalJSONStrict(rest)); err != nil {
		return err
	}
	if err := orNil(dash.Validate()); err != nil {
		return err
	}
	return checkPanels(panels)
}

// checkPanels decodes and validates each top-level panel or row by its kind. Done here rather
// than by the SDK's Dashboard decoder, which drops every panel that decodes cleanly (its
// PanelOrRowPanel returns early on an empty error list) and so never validates them.
func checkPanels(raw json.RawMessage) error {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return fmt.Errorf("panels: %w", err)
	}
	var errs []error
	for i, item := range items {
		if err := checkPanelOrRow(item); err != nil {
			errs = append(errs, fmt.Errorf("panels[%d]: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// checkPanelOrRow checks a row (and the panels a collapsed row holds) or a panel.
func checkPanelOrRow(raw json.RawMessage) error {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return err
	}
	if head.Type != "row" {
		return checkPanel(raw)
	}
	var row dashboard.RowPanel
	if err := orNil(row.UnmarshalJSONStrict(raw)); err != nil {
		return err
	}
	if err := orNil(row.Validate()); err != nil {
		return err
	}
	var errs []error
	for j, inner := range row.Panels {
		if err := checkKinds(inner); err != nil {
			errs = append(errs, fmt.Errorf("panels[%d]: %w", j, err))
		}
	}
	return errors.Join(errs...)
}

// checkPanel decodes one panel strictly (its options, custom field config and targets by the
// schema of its panel type and data source type) and applies the schema's constraints. The
// field config as a whole is decoded strictly too: the SDK's Panel decoder does not.
func checkPanel(raw json.RawMessage) error {
	var panel dashboard.Panel
	if err := orNil(panel.UnmarshalJSONStrict(raw)); err != nil {
		return err
	}
	if err := orNil(panel.Validate()); err != nil {
		return err
	}
	var parts struct {
		FieldConfig json.RawMessage `json:"fieldConfig"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return err
	}
	if parts.FieldConfig != nil {
		var source dashboard.FieldConfigSource
		if err := orNil(source.UnmarshalJSONStrict(parts.FieldConfig)); err != nil {
			return fmt.Errorf("fieldConfig: %w", err)
		}
		if err := orNil(source.Validate()); err != nil {
			return fmt.Errorf("fieldConfig: %w", err)
		}
	}
	return checkKinds(panel)
}

// orNil turns the SDK's empty error list (a non-nil interface holding no errors) into nil.
func orNil(err error) error {
	var list cog.BuildErrors
	if errors.As(err, &list) && len(list) == 0 {
		return nil
	}
	return err
}

// checkKinds fails on a panel type or data source type with no schema: the strict decoder
// takes any other type string as a plugin it does not know, and then any options or queries.
func checkKinds(panel dashboard.Panel) error {
	var errs []error
	if _, found := cog.ConfigForPanelcfgVariant(panel.Type); !found {
		errs = append(errs, fmt.Errorf("panel type %q has no schema in Grafana", panel.Type))
	}
	if panel.Datasource != nil && panel.Datasource.Type != nil && !knownDataSource(*panel.Datasource.Type) {
		errs = append(errs, fmt.Errorf("data source type %q has no query schema in Grafana",
			*panel.Datasource.Type))
	}
	return errors.Join(errs...)
}

// knownDataSource tells whether a data source type has a query schema: an empty query decoded
// with it as the hint comes back as the SDK's UnknownDataquery bag only when it has none.
func knownDataSource(kind string) bool {
	query, err := cog.StrictUnmarshalDataquery([]byte("{}"), kind)
	if err != nil {
		return true // decoded by that type's schema (an empty query lacks its required fields)
	}
	_, unknown := query.(variants.UnknownDataquery)
	return !unknown
}
