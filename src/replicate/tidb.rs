//! TiDB sink (MySQL protocol). Being written.
