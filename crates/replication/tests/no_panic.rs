//! Bad input never panics: arbitrary text through the config parser, replica URLs, Go
//! durations and sizes, env expansion, and arbitrary bytes through the WAL reader.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use replication::internals::expand_with;
use replication::internals::{ByteSize, GoDuration};
use replication::parse_replica_url;
use replication::wal::{Salt, WalReader};
use replication::{Config, LoadOptions};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn text_inputs(s in "\\PC{0,80}") {
        let _ = parse_replica_url(&s);
        let _ = parse_replica_url(&format!("s3://{s}"));
        let _ = parse_replica_url(&format!("s3://b/p?{s}"));
        let _ = GoDuration::parse(&s);
        let _ = ByteSize::parse(&s);
        let _ = expand_with(&s, |_| "x".to_string());
        let _ = Config::parse(&s, LoadOptions { expand_env: false });
        let _ = Config::parse(&format!("dbs:\n  - path: /a.db\n    replica:\n      {s}\n"), LoadOptions { expand_env: false });
    }

    #[test]
    fn wal_bytes(mut bytes in proptest::collection::vec(any::<u8>(), 0..2000), offset in 0u64..3000) {
        // Often give it a valid-looking magic so the reader gets past the header check.
        if bytes.len() >= 4 && bytes[0] % 2 == 0 {
            bytes[..4].copy_from_slice(&0x377f_0682u32.to_be_bytes());
        }
        if let Ok(mut r) = WalReader::open(bytes.as_slice()) {
            let _ = r.read_committed(Some(offset));
        }
        let _ = WalReader::resume(bytes.as_slice(), offset, Salt::default());
    }
}
