//! ClickHouse sink. Being written.
