"""What the device keeps: `history` (the readings, their examples, the MQTT outbox, in SQLite), `corrections`
(a user's corrections exported as a labelled set), `plausibility` (the rule a meter's reading must meet)."""
