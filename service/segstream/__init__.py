"""segstream: live customer segments and churn metrics from Kafka events."""
