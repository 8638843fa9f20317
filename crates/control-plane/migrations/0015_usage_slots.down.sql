DROP TABLE usage_slots;
