DROP TABLE usage_daily;
DROP TABLE usage_hourly;
DROP TABLE usage_counters;
