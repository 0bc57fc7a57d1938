//! The Litestream YAML schema as serde structs (`docs/replication.md#configuration`), before defaults and validation.
//!
//! Every struct denies unknown fields. The replica settings that Litestream inlines both at
//! the top level and in every `replica:` entry live in one struct ([`RawReplicaSettings`]);
//! [`split_mapping`] separates them from the surrounding keys before deserializing, so an
//! unknown key anywhere is reported with its full path.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_yaml_ng::{Mapping, Value};

use super::units::{ByteSize, GoDuration, go_bool};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTop {
    pub addr: Option<String>,
    pub socket: Option<RawSocket>,
    pub levels: Option<Vec<RawLevel>>,
    pub snapshot: Option<RawSnapshot>,
    pub validation: Option<RawValidation>,
    #[serde(rename = "l0-retention")]
    pub l0_retention: Option<GoDuration>,
    #[serde(rename = "l0-retention-check-interval")]
    pub l0_retention_check_interval: Option<GoDuration>,
    #[serde(rename = "verify-compaction")]
    #[serde(default, deserialize_with = "go_bool")]
    pub verify_compaction: Option<bool>,
    pub retention: Option<RawRetention>,
    #[serde(rename = "heartbeat-url")]
    pub heartbeat_url: Option<String>,
    #[serde(rename = "heartbeat-interval")]
    pub heartbeat_interval: Option<GoDuration>,
    /// Deserialized one by one ([`RawDb`]), to split each replica's settings.
    pub dbs: Option<Vec<Value>>,
    pub exec: Option<String>,
    pub logging: Option<RawLogging>,
    #[serde(rename = "mcp-addr")]
    pub mcp_addr: Option<String>,
    #[serde(rename = "shutdown-sync-timeout")]
    pub shutdown_sync_timeout: Option<GoDuration>,
    #[serde(rename = "shutdown-sync-interval")]
    pub shutdown_sync_interval: Option<GoDuration>,
}

/// Parsed for schema completeness; only `enabled` matters (sqlite-rest has no control socket).
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSocket {
    #[serde(default, deserialize_with = "go_bool")]
    pub enabled: Option<bool>,
    pub path: Option<String>,
    pub permissions: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLevel {
    pub interval: Option<GoDuration>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSnapshot {
    pub interval: Option<GoDuration>,
    pub retention: Option<GoDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawValidation {
    pub interval: Option<GoDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    #[serde(default, deserialize_with = "go_bool")]
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogging {
    pub level: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "go_bool")]
    pub stderr: Option<bool>,
    #[serde(default, deserialize_with = "go_bool")]
    pub source: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDb {
    pub path: Option<String>,
    pub dir: Option<String>,
    pub pattern: Option<String>,
    #[serde(default, deserialize_with = "go_bool")]
    pub recursive: Option<bool>,
    #[serde(default, deserialize_with = "go_bool")]
    pub watch: Option<bool>,
    pub snapshot: Option<RawSnapshot>,
    #[serde(rename = "meta-path")]
    pub meta_path: Option<String>,
    #[serde(rename = "meta-dir")]
    pub meta_dir: Option<String>,
    #[serde(rename = "monitor-interval")]
    pub monitor_interval: Option<GoDuration>,
    #[serde(rename = "checkpoint-interval")]
    pub checkpoint_interval: Option<GoDuration>,
    #[serde(rename = "busy-timeout")]
    pub busy_timeout: Option<GoDuration>,
    #[serde(rename = "min-checkpoint-page-count")]
    pub min_checkpoint_page_count: Option<i64>,
    #[serde(rename = "truncate-page-n")]
    pub truncate_page_n: Option<i64>,
    #[serde(rename = "max-sync-wal-bytes")]
    pub max_sync_wal_bytes: Option<i64>,
    #[serde(rename = "restore-if-db-not-exists")]
    #[serde(default, deserialize_with = "go_bool")]
    pub restore_if_db_not_exists: Option<bool>,
    /// Deserialized separately ([`RawReplicaOwn`] + [`RawReplicaSettings`]).
    pub replica: Option<Value>,
    pub replicas: Option<Vec<Value>>,
}

/// The keys of a `replica:` entry that are not shared settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReplicaOwn {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub name: Option<String>,
    pub path: Option<String>,
    pub url: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAge {
    pub identities: Option<Vec<String>>,
    pub recipients: Option<Vec<String>>,
}

/// Replica settings allowed both at the top level (defaults for every replica) and in each
/// `replica:` entry.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReplicaSettings {
    #[serde(rename = "sync-interval")]
    pub sync_interval: Option<GoDuration>,
    #[serde(rename = "validation-interval")]
    pub validation_interval: Option<GoDuration>,
    #[serde(rename = "max-sync-ltx-files")]
    pub max_sync_ltx_files: Option<i64>,
    #[serde(rename = "auto-recover")]
    #[serde(default, deserialize_with = "go_bool")]
    pub auto_recover: Option<bool>,
    // S3
    #[serde(rename = "access-key-id")]
    pub access_key_id: Option<String>,
    #[serde(rename = "secret-access-key")]
    pub secret_access_key: Option<String>,
    pub region: Option<String>,
    pub bucket: Option<String>,
    pub endpoint: Option<String>,
    #[serde(rename = "force-path-style")]
    #[serde(default, deserialize_with = "go_bool")]
    pub force_path_style: Option<bool>,
    #[serde(rename = "sign-payload")]
    #[serde(default, deserialize_with = "go_bool")]
    pub sign_payload: Option<bool>,
    #[serde(rename = "require-content-md5")]
    #[serde(default, deserialize_with = "go_bool")]
    pub require_content_md5: Option<bool>,
    #[serde(rename = "skip-verify")]
    #[serde(default, deserialize_with = "go_bool")]
    pub skip_verify: Option<bool>,
    #[serde(rename = "storage-class")]
    pub storage_class: Option<String>,
    #[serde(rename = "part-size")]
    pub part_size: Option<ByteSize>,
    pub concurrency: Option<i64>,
    #[serde(rename = "sse-customer-algorithm")]
    pub sse_customer_algorithm: Option<String>,
    #[serde(rename = "sse-customer-key")]
    pub sse_customer_key: Option<String>,
    #[serde(rename = "sse-customer-key-path")]
    pub sse_customer_key_path: Option<String>,
    #[serde(rename = "sse-kms-key-id")]
    pub sse_kms_key_id: Option<String>,
    // ABS
    #[serde(rename = "account-name")]
    pub account_name: Option<String>,
    #[serde(rename = "account-key")]
    pub account_key: Option<String>,
    #[serde(rename = "sas-token")]
    pub sas_token: Option<String>,
    // SFTP
    pub host: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    #[serde(rename = "key-path")]
    pub key_path: Option<String>,
    #[serde(rename = "concurrent-writes")]
    #[serde(default, deserialize_with = "go_bool")]
    pub concurrent_writes: Option<bool>,
    #[serde(rename = "host-key")]
    pub host_key: Option<String>,
    // WebDAV
    #[serde(rename = "webdav-url")]
    pub webdav_url: Option<String>,
    #[serde(rename = "webdav-username")]
    pub webdav_username: Option<String>,
    #[serde(rename = "webdav-password")]
    pub webdav_password: Option<String>,
    // NATS
    pub jwt: Option<String>,
    pub seed: Option<String>,
    pub creds: Option<String>,
    pub nkey: Option<String>,
    pub username: Option<String>,
    pub token: Option<String>,
    #[serde(default, deserialize_with = "go_bool")]
    pub tls: Option<bool>,
    #[serde(rename = "root-cas")]
    pub root_cas: Option<Vec<String>>,
    #[serde(rename = "client-cert")]
    pub client_cert: Option<String>,
    #[serde(rename = "client-key")]
    pub client_key: Option<String>,
    #[serde(rename = "max-reconnects")]
    pub max_reconnects: Option<i64>,
    #[serde(rename = "reconnect-wait")]
    pub reconnect_wait: Option<GoDuration>,
    pub timeout: Option<GoDuration>,
    pub age: Option<RawAge>,
}

macro_rules! inherit {
    ($self:ident, $src:ident; $($f:ident),* $(,)?) => {
        $( if $self.$f.is_none() { $self.$f = $src.$f.clone(); } )*
    };
}

impl RawReplicaSettings {
    /// Fills every unset setting from the global defaults (Litestream's `SetDefaults`).
    pub(super) fn inherit(&mut self, global: &RawReplicaSettings) {
        inherit!(self, global;
            sync_interval, validation_interval, max_sync_ltx_files, auto_recover,
            access_key_id, secret_access_key, region, bucket, endpoint, force_path_style,
            sign_payload, require_content_md5, storage_class, part_size, concurrency,
            sse_customer_algorithm, sse_customer_key, sse_customer_key_path, sse_kms_key_id,
            account_name, account_key, sas_token, host, user, password, key_path,
            concurrent_writes, host_key, webdav_url, webdav_username, webdav_password,
            jwt, seed, creds, nkey, username, token, tls, root_cas, client_cert, client_key,
            max_reconnects, reconnect_wait, timeout, age,
        );
        // A global `skip-verify: true` always wins (as Litestream).
        if global.skip_verify == Some(true) {
            self.skip_verify = Some(true);
        }
    }
}

/// The field names serde expects for `T` (read from its derived `Deserialize`).
pub(super) fn struct_fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Recorder<'a>(&'a mut &'static [&'static str]);

    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }

    impl<'de> Deserializer<'de> for Recorder<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Recorder(&mut fields));
    fields
}

/// Splits a mapping into the keys of `own` and the keys of `shared`; the first key in
/// neither is returned as an error (with all allowed keys, for a suggestion).
pub(super) fn split_mapping(
    map: &Mapping,
    own: &[&str],
    shared: &[&str],
) -> Result<(Mapping, Mapping), String> {
    let mut a = Mapping::new();
    let mut b = Mapping::new();
    for (k, v) in map {
        let Some(key) = k.as_str() else {
            return Err(format!("{k:?}"));
        };
        if own.contains(&key) {
            a.insert(k.clone(), v.clone());
        } else if shared.contains(&key) {
            b.insert(k.clone(), v.clone());
        } else {
            return Err(key.to_string());
        }
    }
    Ok((a, b))
}
