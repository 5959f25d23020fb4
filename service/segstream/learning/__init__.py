"""What the learned segment models share: the behavioural feature vector and its scaling,
leak-free churn labels from the stream, progressive-validation quality measures, and
customer-lifetime formulas (BG/NBD, CLV and its trend)."""
