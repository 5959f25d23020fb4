// segstream console: reads the worker's JSON API with the person's token and draws it.
// The page holds no data. The token comes from the form or the URL fragment (#token=...,
// which browsers never send to a server); it is kept in this tab's sessionStorage only and
// sent as "Authorization: Bearer". Everything from the API is put into the page as text
// (textContent), never as HTML. Charts: Chart.js, vendored next to this file.
"use strict";

(() => {
  const TOKEN_KEY = "segstream.console.token";
  const TREND_MONTHS = 6;
  const PACE = { burst: 20, perSecond: 15 };
  // Below the workers' default per-token rate (40 at once, 20 per second): a page load
  // never meets a 429. A stricter deployment's 429 is waited out (Retry-After).
  const MAX_RATE_WAITS = 3;

  const state = { token: null, shop: null, asOf: null, sizes: null, model: null, prefixes: true, generation: 0 };
  const charts = new Map();
  const bucket = { tokens: PACE.burst, at: performance.now() };

  const $ = (id) => document.getElementById(id);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // An answer for a shop or token no longer shown: dropped, never drawn.
  class Stale extends Error {}

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.detail) || `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  // ------------------------------------------------------------------ API access

  async function pace() {
    for (;;) {
      const now = performance.now();
      bucket.tokens = Math.min(PACE.burst, bucket.tokens + ((now - bucket.at) / 1000) * PACE.perSecond);
      bucket.at = now;
      if (bucket.tokens >= 1) {
        bucket.tokens -= 1;
        return;
      }
      await sleep(((1 - bucket.tokens) / PACE.perSecond) * 1000);
    }
  }

  async function api(path) {
    const generation = state.generation;
    for (let waits = 0; ; waits += 1) {
      await pace();
      if (generation !== state.generation) throw new Stale();
      const response = await fetch(path, {
        headers: { Authorization: `Bearer ${state.token}`, Accept: "application/json" },
        cache: "no-store",
        credentials: "omit",
        referrerPolicy: "no-referrer",
      });
      const body = await response.json().catch(() => null);
      if (generation !== state.generation) throw new Stale();
      if (response.status === 429 && waits < MAX_RATE_WAITS) {
        await sleep(1000 * Number(response.headers.get("Retry-After") || 1));
        continue;
      }
      if (!response.ok) throw new ApiError(response.status, body);
      return body;
    }
  }

  // A route a worker may not serve yet (GET /shops, flows, customer search): null on 404.
  async function optional(path) {
    try {
      return await api(path);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return null;
      throw error;
    }
  }

  const shopPath = (rest) => `shops/${encodeURIComponent(state.shop)}${rest}`;

  // ------------------------------------------------------------------ small DOM helpers

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function table(headers, rows) {
    const node = el("table");
    const head = node.createTHead().insertRow();
    headers.forEach((text, i) => head.append(el("th", text, i === 0 ? "row" : undefined)));
    const body = node.createTBody();
    for (const cells of rows) {
      const row = body.insertRow();
      cells.forEach((cell, i) => {
        const td = cell instanceof Node ? cell : el("td", cell);
        if (i === 0) td.className = "row";
        row.append(td);
      });
    }
    return node;
  }

  function shaded(text, share) {
    const td = el("td", text);
    if (share !== null && Number.isFinite(share)) {
      const alpha = Math.max(0, Math.min(1, share));
      td.style.backgroundColor = `rgba(37, 99, 235, ${(0.08 + 0.6 * alpha).toFixed(3)})`;
      if (alpha > 0.6) td.style.color = "#fff";
    }
    return td;
  }

  const number = new Intl.NumberFormat("en", { maximumFractionDigits: 2 });
  const fmt = (value) => (value === null || value === undefined ? "–" : number.format(value));
  const pct = (value) => (value === null || value === undefined ? "–" : `${(100 * value).toFixed(1)} %`);

  function panel(name, status, content) {
    const section = $(`panel-${name}`);
    section.dataset.state = status;
    const body = section.querySelector('[data-role="body"]');
    if (body && content !== undefined) body.replaceChildren(...[].concat(content));
    return section;
  }

  function chart(id, config) {
    const old = charts.get(id);
    if (old) old.destroy();
    config.options = Object.assign({ animation: false, maintainAspectRatio: false }, config.options);
    const made = new window.Chart($(id), config);
    charts.set(id, made);
    return made;
  }

  function say(text, isError) {
    const message = $("message");
    message.textContent = text;
    message.classList.toggle("error", Boolean(isError));
  }

  function refusal(error) {
    if (!(error instanceof ApiError)) return `The worker could not be reached (${error.message}).`;
    if (error.status === 401) return "This token is not accepted (unknown or revoked). Nothing is shown.";
    if (error.status === 403) return `This token may not read shop ${state.shop}. Nothing is shown.`;
    if (error.status === 404) return `No shop ${state.shop} is known to the workers.`;
    return `The API answered ${error.status}: ${error.message}`;
  }

  // ------------------------------------------------------------------ token and shop

  function readFragment() {
    const params = new URLSearchParams(location.hash.slice(1));
    if (params.has("token")) {
      sessionStorage.setItem(TOKEN_KEY, params.get("token"));
      history.replaceState(null, "", location.pathname + location.search);
    }
    return { token: sessionStorage.getItem(TOKEN_KEY), shop: params.get("shop") };
  }

  function hideData() {
    state.generation += 1;
    $("panels").hidden = true;
    for (const made of charts.values()) made.destroy();
    charts.clear();
    document.querySelectorAll('[data-role="body"]').forEach((node) => node.replaceChildren());
    document.querySelectorAll(".panel").forEach((node) => (node.dataset.state = "idle"));
  }

  async function connect(wantedShop) {
    hideData();
    $("shop-form").hidden = true;
    $("forget-token").hidden = false;
    say("Checking the token…");
    let listed;
    try {
      listed = await optional("shops");
      if (listed === null) await api("templates"); // no shop list: any route of no shop checks the token
    } catch (error) {
      if (!(error instanceof Stale)) say(refusal(error), true);
      return;
    }
    offerShops(listed ? listed.shops.map((shop) => shop.shop_id) : null, wantedShop);
  }

  function offerShops(ids, wanted) {
    const select = $("shop-select");
    const input = $("shop-input");
    select.hidden = ids === null;
    input.hidden = ids !== null;
    $("shop-form").hidden = false;
    if (ids !== null) {
      select.replaceChildren(...ids.map((id) => new Option(id, id)));
      if (wanted && ids.includes(wanted)) select.value = wanted;
      if (ids.length === 0) return say("This token may read no shop yet.", false);
      return showShop(select.value);
    }
    input.value = wanted || "";
    if (wanted) return showShop(wanted);
    say("Type the shop id to show (this worker does not list shops).", false);
  }

  async function showShop(shop) {
    hideData();
    state.shop = shop;
    say(`Loading ${shop}…`);
    try {
      state.sizes = await api(shopPath("/segments"));
    } catch (error) {
      if (!(error instanceof Stale)) say(refusal(error), true);
      return;
    }
    state.asOf = state.sizes.as_of;
    $("as-of").textContent = `stream time ${state.asOf}`;
    $("panels").hidden = false;
    say(`Shop ${shop}`, false);
    offerModels(Object.keys(state.sizes.models));
    $("flows-start").value = monthStart(state.asOf);
    await Promise.all([segments(), flows(), metrics(), cohorts(), journey(), definitions(), experiments()]);
  }

  function offerModels(models) {
    const select = $("model-select");
    select.replaceChildren(...models.map((model) => new Option(model, model)));
    state.model = models.includes("lifecycle") ? "lifecycle" : models[0];
    select.value = state.model;
  }

  // Each panel shows its own failure; a refused token has been caught by showShop already.
  async function guarded(name, draw) {
    panel(name, "loading");
    try {
      await draw();
    } catch (error) {
      if (!(error instanceof Stale)) panel(name, "error", el("p", refusal(error)));
    }
  }

  // ------------------------------------------------------------------ time

  function monthStart(iso) {
    return `${iso.slice(0, 7)}-01`;
  }

  function monthsBack(iso, count) {
    const year = Number(iso.slice(0, 4));
    const month = Number(iso.slice(5, 7)) - 1;
    const months = [];
    for (let back = count - 1; back >= 0; back -= 1) {
      const at = new Date(Date.UTC(year, month - back, 1));
      months.push(at.toISOString().slice(0, 10));
    }
    return months;
  }

  // ------------------------------------------------------------------ panels

  function segmentLabel(model, segment) {
    const name = ((state.sizes.names || {})[model] || {})[segment];
    return name ? `${segment} · ${name}` : segment;
  }

  function segments() {
    return guarded("segments", async () => {
      const model = state.model;
      const sizes = state.sizes.models[model] || {};
      const names = Object.keys(sizes);
      chart("chart-segments", {
        type: "bar",
        data: {
          labels: names.map((segment) => segmentLabel(model, segment)),
          datasets: [{ label: `customers per ${model} segment`, data: names.map((s) => sizes[s]) }],
        },
        options: { indexAxis: "y", plugins: { legend: { display: false } } },
      });
      $("segment-downloads").replaceChildren(downloads(model, names, sizes));
      await segmentTrend(model, names);
      panel("segments", names.length ? "ready" : "empty");
    });
  }

  // Each segment's members as CSV (GET .../members.csv): fetched with the token, which a
  // plain link could not send, and handed to the browser as a file.
  function downloads(model, names, sizes) {
    return table(
      ["segment", "customers", "members"],
      names.map((segment) => {
        const button = el("button", "Download CSV");
        button.type = "button";
        button.dataset.segment = segment;
        button.addEventListener("click", () => download(model, segment, button));
        const cell = el("td");
        cell.append(button);
        return [segmentLabel(model, segment), fmt(sizes[segment]), cell];
      }),
    );
  }

  async function download(model, segment, button) {
    const path = shopPath(`/segments/${encodeURIComponent(model)}/${encodeURIComponent(segment)}/members.csv`);
    button.disabled = true;
    try {
      await pace();
      const response = await fetch(path, {
        headers: { Authorization: `Bearer ${state.token}` },
        cache: "no-store",
        credentials: "omit",
        referrerPolicy: "no-referrer",
      });
      if (!response.ok) {
        const body = await response.json().catch(() => null);
        say(`The export of ${segment} failed: ${(body && body.detail) || response.status}`, true);
        return;
      }
      const url = URL.createObjectURL(await response.blob());
      const link = el("a");
      link.href = url;
      link.download = `${state.shop}-${model}-${segment}.csv`.replace(/[^A-Za-z0-9._-]/g, "-");
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } finally {
      button.disabled = false;
    }
  }

  // Sizes at each month's end, exact: the sizes now minus the net moves of every later
  // month (GET /flows); before a month the workers no longer keep, or began counting flows
  // in (state an older release wrote), every month is a gap.
  async function segmentTrend(model, names) {
    const months = monthsBack(state.asOf, TREND_MONTHS);
    const answers = await Promise.all(
      months.map((start) => optional(shopPath(`/flows?model=${encodeURIComponent(model)}&grain=month&start=${start}`))),
    );
    const sizes = state.sizes.models[model] || {};
    const series = names.map(() => new Array(months.length).fill(null));
    const size = new Map(names.map((segment) => [segment, sizes[segment] || 0]));
    for (let i = months.length - 1; i >= 0; i -= 1) {
      names.forEach((segment, n) => {
        series[n][i] = size.get(segment);
      });
      const answer = answers[i];
      if (answer === null || answer.counted_from > answer.start) break; // not kept, or counted only in part
      for (const segment of names) {
        const net = (answer.entered[segment] || 0) - (answer.left[segment] || 0);
        size.set(segment, size.get(segment) - net);
      }
    }
    chart("chart-segment-trend", {
      type: "line",
      data: {
        labels: months.map((start) => start.slice(0, 7)),
        datasets: names.map((segment, i) => ({ label: segment, data: series[i], spanGaps: false })),
      },
      options: { scales: { y: { beginAtZero: true } } },
    });
    const note = $("panel-segments").querySelector('[data-role="note"]');
    note.textContent = `Customers in each segment at each month's end (${months[months.length - 1].slice(0, 7)}: now), from the sizes now and each month's flows; a month the workers no longer keep is a gap.`;
  }

  function flows() {
    return guarded("flows", async () => {
      const grain = $("flows-grain").value;
      const start = $("flows-start").value;
      const query = `?model=${encodeURIComponent(state.model)}&grain=${grain}&start=${start}`;
      const answer = await optional(shopPath(`/flows${query}`));
      if (answer === null) {
        const text = `No flows for ${state.model}, ${grain} from ${start}: the worker has none for this window (or does not serve flows).`;
        return panel("flows", "empty", el("p", text, "empty"));
      }
      panel("flows", answer.flows.length ? "ready" : "empty", flowMatrix(answer));
    });
  }

  function flowMatrix(answer) {
    const label = (segment) => (segment === null ? "(none)" : segment);
    const froms = [...new Set(answer.flows.map((flow) => label(flow.from)))].sort();
    const tos = [...new Set(answer.flows.map((flow) => label(flow.to)))].sort();
    const counts = new Map(answer.flows.map((flow) => [`${label(flow.from)}\u0000${label(flow.to)}`, flow.customers]));
    const most = Math.max(1, ...answer.flows.map((flow) => flow.customers));
    const rows = froms.map((from) => [
      from,
      ...tos.map((to) => {
        const n = counts.get(`${from}\u0000${to}`);
        return n === undefined ? el("td", "") : shaded(n, n / most);
      }),
    ]);
    const caption = el("p", `${answer.model}, ${answer.grain} ${answer.start} – ${answer.end}: rows from, columns to; (none) = in no segment.`, "note");
    const segmentsSeen = [...new Set([...Object.keys(answer.entered), ...Object.keys(answer.left)])].sort();
    const moves = table(
      ["segment", "entered", "left"],
      segmentsSeen.map((segment) => [segment, fmt(answer.entered[segment] || 0), fmt(answer.left[segment] || 0)]),
    );
    if (!answer.flows.length) return [caption, el("p", "No customer moved in this window.", "empty")];
    return [caption, table(["from \\ to", ...tos], rows), moves];
  }

  function metrics() {
    return guarded("metrics", async () => {
      const months = monthsBack(state.asOf, TREND_MONTHS);
      const windows = (await Promise.all(months.map((start) => optional(shopPath(`/metrics?grain=month&start=${start}`))))).filter(Boolean);
      if (!windows.length) return panel("metrics", "empty", el("p", "No month is kept for this shop.", "empty"));
      const labels = windows.map((w) => w.start.slice(0, 7) + (w.complete ? "" : " (so far)"));
      const rate = (name) => windows.map((w) => (w.rates[name] === null ? null : 100 * w.rates[name]));
      chart("chart-rates", {
        type: "line",
        data: { labels, datasets: [{ label: "churn %", data: rate("churn") }, { label: "retention %", data: rate("retention") }, { label: "net revenue retention %", data: rate("net_revenue_retention") }] },
        options: { scales: { y: { beginAtZero: true } } },
      });
      chart("chart-mrr", {
        type: "bar",
        data: { labels, datasets: [{ label: "MRR at month end", data: windows.map((w) => w.mrr.end) }, { label: "new MRR", data: windows.map((w) => w.mrr.new) }, { label: "churned MRR", data: windows.map((w) => w.mrr.churn) }] },
      });
      const rows = windows.map((w, i) => [labels[i], fmt(w.subscribers.start), fmt(w.subscribers.end), fmt(w.signups), fmt(w.subscribers.churned), pct(w.rates.churn), pct(w.rates.retention), fmt(w.mrr.end)]);
      panel("metrics", "ready", table(["month", "subscribers at start", "at end", "signups", "churned", "churn", "retention", "MRR"], rows));
    });
  }

  function cohorts() {
    return guarded("cohorts", async () => {
      const answer = await api(shopPath("/cohorts?months=12"));
      const signedUp = answer.cohorts.filter((cohort) => cohort.customers > 0);
      if (!signedUp.length) return panel("cohorts", "empty", el("p", "No signup cohort yet.", "empty"));
      const width = Math.max(...signedUp.map((c) => c.months.length));
      const headers = ["cohort", "customers", ...Array.from({ length: width }, (_, i) => `month ${i}`)];
      const rows = signedUp.map((cohort) => {
        const cells = cohort.months.map((m) => shaded(pct(m.retention), m.retention));
        while (cells.length < width) cells.push(el("td", ""));
        return [cohort.cohort, fmt(cohort.customers), ...cells];
      });
      const note = el("p", "Share of each signup month's customers still subscribed, by months since signup.", "note");
      panel("cohorts", "ready", [table(headers, rows), note]);
    });
  }

  function journey() {
    return guarded("journey", async () => {
      const answer = await api(shopPath("/journey?months=12"));
      const stages = answer.funnel.stages;
      chart("chart-journey", {
        type: "bar",
        data: { labels: stages.map((s) => s.stage), datasets: [{ label: "customers", data: stages.map((s) => s.customers) }] },
        options: { indexAxis: "y", plugins: { legend: { display: false } } },
      });
      const rows = stages.map((s) => [s.stage, fmt(s.customers), pct(s.conversion), fmt(s.drop_off)]);
      panel("journey", stages[0].customers ? "ready" : "empty", table(["stage", "customers", "conversion", "dropped off"], rows));
    });
  }

  function definitions() {
    return guarded("definitions", async () => {
      const answer = await api(shopPath("/definitions"));
      if (!answer.definitions.length) return panel("definitions", "empty", el("p", "The shop defines no segment.", "empty"));
      const rows = answer.definitions.map((d) => [d.definition.segment_id, d.definition.name, fmt(d.definition.version), fmt(d.members), d.reevaluating ? "re-evaluating" : "live"]);
      panel("definitions", "ready", table(["segment", "name", "version", "members", "state"], rows));
    });
  }

  function experiments() {
    return guarded("experiments", async () => {
      const answer = await api(shopPath("/experiments"));
      if (!answer.experiments.length) return panel("experiments", "empty", el("p", "The shop runs no experiment.", "empty"));
      panel("experiments", "loading", answer.experiments.map(experimentBlock));
      answer.experiments.forEach(drawIntervals);
      panel("experiments", "ready");
    });
  }

  function experimentBlock(readout, index) {
    const e = readout.experiment;
    const block = el("div", undefined, "experiment");
    block.append(el("h3", `${e.name} (${e.experiment_id}) on ${e.model} = ${e.segment}, control ${readout.control}`));
    const rows = Object.entries(readout.arms).map(([arm, f]) => [arm, fmt(f.members), fmt(f.churned), pct(f.retention), fmt(f.orders), fmt(f.revenue_per_member)]);
    block.append(table(["arm", "members", "churned", "retention", "orders", "revenue per member"], rows));
    for (const what of ["churn", "revenue"]) {
      const box = el("div", undefined, "chart");
      const canvas = el("canvas");
      canvas.id = `chart-experiment-${index}-${what}`;
      box.append(canvas);
      block.append(box);
    }
    return block;
  }

  // Each arm against the control: the 95 % interval as a floating bar, the estimate as a point.
  function drawIntervals(readout, index) {
    const arms = Object.keys(readout.comparisons);
    const series = (key, scale) => arms.map((arm) => readout.comparisons[arm][key]).map((i) => (i ? [scale * i.low, scale * i.high, scale * i.estimate] : null));
    const plots = { churn: ["churn difference vs control (percentage points)", series("churn", 100)], revenue: ["revenue per member difference vs control", series("revenue_per_member", 1)] };
    for (const [what, [title, values]] of Object.entries(plots)) {
      if (values.every((v) => v === null)) {
        const text = `${title}: no interval yet (${arms.map((arm) => readout.comparisons[arm].status).join(", ")}).`;
        $(`chart-experiment-${index}-${what}`).parentElement.replaceWith(el("p", text, "note"));
        continue;
      }
      chart(`chart-experiment-${index}-${what}`, {
        type: "bar",
        data: {
          labels: arms,
          datasets: [
            { type: "bar", label: "95 % interval", data: values.map((v) => (v ? [v[0], v[1]] : null)), barPercentage: 0.3 },
            { type: "line", label: "estimate", data: values.map((v) => (v ? v[2] : null)), showLine: false, pointRadius: 6, pointStyle: "rectRot" },
          ],
        },
        options: { indexAxis: "y", plugins: { title: { display: true, text: title } } },
      });
    }
  }

  // ------------------------------------------------------------------ customer lookup

  let searchTimer = null;
  function searchCustomers() {
    clearTimeout(searchTimer);
    const prefix = $("customer-input").value;
    if (!state.prefixes || !prefix) return;
    searchTimer = setTimeout(async () => {
      const path = shopPath(`/customers?prefix=${encodeURIComponent(prefix)}&limit=20`);
      const found = await optional(path).catch((error) => (error instanceof Stale ? undefined : null));
      if (found === undefined) return;
      if (found === null) state.prefixes = false; // this worker has no search: ids are typed whole
      else $("customer-ids").replaceChildren(...found.customers.map((id) => new Option(id, id)));
    }, 250);
  }

  function lookUp(id) {
    return guarded("customer", async () => {
      let answer;
      try {
        answer = await api(shopPath(`/customers/${encodeURIComponent(id)}`));
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) return panel("customer", "empty", el("p", `No customer ${id} in ${state.shop}.`, "empty"));
        throw error;
      }
      panel("customer", "ready", customerTables(answer));
    });
  }

  function customerTables(answer) {
    const f = answer.features || {};
    const scores = answer.scores || {};
    const segmentRows = Object.entries(answer.segments).map(([model, segment]) => [model, segmentLabel(model, segment)]);
    const featureRows = [
      ["orders", fmt(f.order_count)], ["total spend", fmt(f.total_spend)], ["days since last purchase", fmt(f.days_since_last_purchase)],
      ["subscription", f.subscription ?? "–"], ["plan tier", f.plan_tier ?? "–"],
      ["churn probability", scores.churn_risk ? pct(scores.churn_risk.probability) : "–"],
    ];
    return [el("h3", `${answer.customer_id} as of ${answer.as_of}`), table(["model", "segment"], segmentRows), table(["feature", "value"], featureRows)];
  }

  // ------------------------------------------------------------------ wiring

  function wire() {
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.token = $("token-input").value.trim();
      $("token-input").value = "";
      if (!state.token) return;
      sessionStorage.setItem(TOKEN_KEY, state.token);
      connect(null);
    });
    $("forget-token").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      state.token = null;
      hideData();
      $("shop-form").hidden = true;
      $("forget-token").hidden = true;
      say("Token forgotten.", false);
    });
    $("shop-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const shop = $("shop-select").hidden ? $("shop-input").value.trim() : $("shop-select").value;
      if (shop) showShop(shop);
    });
    $("shop-select").addEventListener("change", () => showShop($("shop-select").value));
    $("model-select").addEventListener("change", () => {
      state.model = $("model-select").value;
      segments();
      flows();
    });
    $("flows-form").addEventListener("submit", (event) => {
      event.preventDefault();
      flows();
    });
    $("customer-input").addEventListener("input", searchCustomers);
    $("customer-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const id = $("customer-input").value.trim();
      if (id) lookUp(id);
    });
  }

  wire();
  const start = readFragment();
  if (start.token) {
    state.token = start.token;
    connect(start.shop);
  }
})();
