#include "registry/migrations.hpp"

namespace plantd {

// Identifiers are ASCII with a binary collation: "F1" and "f1" are two factories, as they are in
// topics and in InfluxDB (MariaDB's default collation would make them one). Every table below
// factories is keyed by factory_id first, so every query filters by factory.
const std::vector<Migration>& registry_migrations() {
    static const std::vector<Migration> migrations{
        {1,
         "factories, devices and device tags",
         {R"sql(CREATE TABLE IF NOT EXISTS factories (
  factory_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
  enabled BOOLEAN NOT NULL DEFAULT TRUE,
  unknown_device_policy ENUM('reject', 'auto_register') NOT NULL DEFAULT 'reject',
  rate_limit_per_s DOUBLE NULL,
  rate_burst DOUBLE NULL,
  influx_destination VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB)sql",
          R"sql(CREATE TABLE IF NOT EXISTS devices (
  factory_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  device_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  enabled BOOLEAN NOT NULL DEFAULT TRUE,
  auto_registered BOOLEAN NOT NULL DEFAULT FALSE,
  created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  PRIMARY KEY (factory_id, device_id),
  CONSTRAINT devices_factory FOREIGN KEY (factory_id) REFERENCES factories (factory_id)
) ENGINE=InnoDB)sql",
          R"sql(CREATE TABLE IF NOT EXISTS device_tags (
  factory_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  device_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  tag_key VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  tag_value VARCHAR(256) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  PRIMARY KEY (factory_id, device_id, tag_key),
  CONSTRAINT device_tags_device FOREIGN KEY (factory_id, device_id)
    REFERENCES devices (factory_id, device_id) ON DELETE CASCADE
) ENGINE=InnoDB)sql"}},
        {2,
         "discovered parameters (metric names and their InfluxDB field type)",
         {R"sql(CREATE TABLE IF NOT EXISTS parameters (
  factory_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  name VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  value_type ENUM('float', 'integer', 'boolean', 'string') NOT NULL,
  unit VARCHAR(32) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  first_device_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  first_seen TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  last_seen TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (factory_id, name),
  CONSTRAINT parameters_factory FOREIGN KEY (factory_id) REFERENCES factories (factory_id)
) ENGINE=InnoDB)sql"}},
        {3, "alerts (history and acknowledgement)", {R"sql(CREATE TABLE IF NOT EXISTS alerts (
  alert_id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  factory_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  device_id VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  rule_id VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  severity ENUM('info', 'warning', 'major', 'critical') NOT NULL,
  state ENUM('pending', 'firing', 'resolved') NOT NULL,
  message TEXT NOT NULL,
  value_json TEXT NULL,
  started_at TIMESTAMP(3) NOT NULL,
  fired_at TIMESTAMP(3) NULL,
  resolved_at TIMESTAMP(3) NULL,
  acknowledged_at TIMESTAMP(3) NULL,
  acknowledged_by VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
  KEY alerts_active (factory_id, state),
  KEY alerts_device_rule (factory_id, device_id, rule_id),
  CONSTRAINT alerts_factory FOREIGN KEY (factory_id) REFERENCES factories (factory_id)
) ENGINE=InnoDB)sql"}},
        {4,
         "index devices by device_id (auto-registration checks every factory)",
         {"CREATE INDEX IF NOT EXISTS devices_device_id ON devices (device_id)"}},
        {5,
         "alerts: the public alert id (UUID, also in MQTT and InfluxDB) and why an alert resolved",
         {"ALTER TABLE alerts ADD COLUMN IF NOT EXISTS alert_uuid CHAR(36) CHARACTER SET ascii COLLATE "
          "ascii_bin "
          "NULL AFTER alert_id",
          "ALTER TABLE alerts ADD COLUMN IF NOT EXISTS resolve_reason VARCHAR(255) CHARACTER SET utf8mb4 "
          "COLLATE "
          "utf8mb4_bin NULL AFTER resolved_at",
          "CREATE UNIQUE INDEX IF NOT EXISTS alerts_uuid ON alerts (alert_uuid)"}},
    };
    return migrations;
}

}  // namespace plantd
