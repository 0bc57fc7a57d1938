//! Where a replica lives: the resolved settings of one replica, whichever way it was given.
//!
//! Both sources of replica settings produce a [`ReplicaTarget`]: a `replica:` entry of the
//! Litestream YAML config ([`crate::litestream_config`]) and a replica URL such as
//! `s3://bucket/prefix?endpoint=…` ([`crate::url`]). A replica client
//! ([`crate::client::open_client`]) is built from it. Backends Litestream knows but sqlite-rest
//! does not implement are kept as [`ReplicaTarget::Unsupported`], so they fail with a clear
//! error when used instead of being silently ignored.

use std::fmt;
use std::path::PathBuf;

/// The replica backends Litestream knows (the `type:` key / URL scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaKind {
    File,
    S3,
    Gs,
    Abs,
    Sftp,
    Webdav,
    Nats,
    Oss,
}

impl ReplicaKind {
    /// Parses a `type:` value or URL scheme (`webdavs` is WebDAV over HTTPS).
    pub fn parse(s: &str) -> Option<ReplicaKind> {
        Some(match s {
            "file" => ReplicaKind::File,
            "s3" => ReplicaKind::S3,
            "gs" => ReplicaKind::Gs,
            "abs" => ReplicaKind::Abs,
            "sftp" => ReplicaKind::Sftp,
            "webdav" | "webdavs" => ReplicaKind::Webdav,
            "nats" => ReplicaKind::Nats,
            "oss" => ReplicaKind::Oss,
            _ => return None,
        })
    }

    /// The name Litestream uses (`replica_type` metric label, `type:` value).
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaKind::File => "file",
            ReplicaKind::S3 => "s3",
            ReplicaKind::Gs => "gs",
            ReplicaKind::Abs => "abs",
            ReplicaKind::Sftp => "sftp",
            ReplicaKind::Webdav => "webdav",
            ReplicaKind::Nats => "nats",
            ReplicaKind::Oss => "oss",
        }
    }

    /// True for the backends sqlite-rest implements.
    pub fn is_supported(self) -> bool {
        matches!(self, ReplicaKind::File | ReplicaKind::S3 | ReplicaKind::Abs)
    }
}

impl fmt::Display for ReplicaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that must not appear in logs or `Debug` output (keys, passwords).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Where one replica lives.
#[allow(clippy::large_enum_variant)] // one per replica, built once
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaTarget {
    /// A directory on a local (or mounted) file system: `<path>/ltx/<level>/<name>`.
    File(FileTarget),
    /// An S3 bucket or S3-compatible service: `<prefix>/<%04x level>/<name>`.
    S3(S3Target),
    /// An Azure Blob Storage container: `<path>/ltx/<level>/<name>`.
    Abs(AbsTarget),
    /// A backend Litestream supports and sqlite-rest does not (yet); using it is an error
    /// ([`ReplicaTarget::ensure_supported`]).
    Unsupported { kind: ReplicaKind, location: String },
}

impl ReplicaTarget {
    pub fn kind(&self) -> ReplicaKind {
        match self {
            ReplicaTarget::File(_) => ReplicaKind::File,
            ReplicaTarget::S3(_) => ReplicaKind::S3,
            ReplicaTarget::Abs(_) => ReplicaKind::Abs,
            ReplicaTarget::Unsupported { kind, .. } => *kind,
        }
    }

    /// An error naming the backend unless sqlite-rest implements it.
    pub fn ensure_supported(&self) -> Result<(), UnsupportedBackend> {
        match self {
            ReplicaTarget::Unsupported { kind, location } => Err(UnsupportedBackend {
                kind: *kind,
                location: location.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// A short description for logs, without secrets (`file:///data/replica`,
    /// `s3://bucket/prefix`, `abs://account@container/path`).
    pub fn describe(&self) -> String {
        match self {
            ReplicaTarget::File(f) => format!("file://{}", f.path.display()),
            ReplicaTarget::S3(s) => format!("s3://{}/{}", s.bucket, s.path),
            ReplicaTarget::Abs(a) => a.describe(),
            ReplicaTarget::Unsupported { kind, location } => format!("{kind}: {location}"),
        }
    }
}

/// The error for a backend that is configured but not implemented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{kind} replicas ({location}) are not supported by sqlite-rest; supported replica types are file, s3 and abs"
)]
pub struct UnsupportedBackend {
    pub kind: ReplicaKind,
    pub location: String,
}

/// A file replica: an absolute directory path (`~/` already expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTarget {
    pub path: PathBuf,
}

/// An S3 (or S3-compatible) replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Target {
    pub bucket: String,
    /// Key prefix, cleaned, without leading or trailing `/` (objects are
    /// `<path>/<%04x level>/<name>`).
    pub path: String,
    /// `None`: `us-east-1` with a custom endpoint, otherwise looked up from the bucket.
    pub region: Option<String>,
    /// Full endpoint URL with scheme (`http://127.0.0.1:9000`), for non-AWS services.
    pub endpoint: Option<String>,
    pub force_path_style: bool,
    /// Accept any TLS certificate (`skip-verify`).
    pub skip_verify: bool,
    /// Credentials from the config; `None` means the standard `AWS_*` environment
    /// (and `LITESTREAM_ACCESS_KEY_ID` / `LITESTREAM_SECRET_ACCESS_KEY`).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub sign_payload: bool,
    pub require_content_md5: bool,
    pub storage_class: Option<String>,
    /// Multipart part size in bytes (minimum 5 MiB); `None` = 5 MiB.
    pub part_size: Option<u64>,
    /// Parallel part uploads; `None` = 5 (2 for Cloudflare R2).
    pub concurrency: Option<usize>,
    /// SSE-C: algorithm (always AES256) and the base64 key.
    pub sse_customer_key: Option<Secret>,
    pub sse_customer_algorithm: Option<String>,
    pub sse_kms_key_id: Option<String>,
}

impl S3Target {
    /// A target with Litestream's defaults for everything but bucket and prefix.
    pub fn new(bucket: impl Into<String>, path: impl Into<String>) -> S3Target {
        S3Target {
            bucket: bucket.into(),
            path: path.into(),
            region: None,
            endpoint: None,
            force_path_style: false,
            skip_verify: false,
            access_key_id: None,
            secret_access_key: None,
            sign_payload: true,
            require_content_md5: true,
            storage_class: None,
            part_size: None,
            concurrency: None,
            sse_customer_key: None,
            sse_customer_algorithm: None,
            sse_kms_key_id: None,
        }
    }
}

/// An Azure Blob Storage replica (`type: abs`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AbsTarget {
    /// The storage account (`account-name`, or the user of `abs://account@container/path`).
    /// Required unless a SAS token is used with an `endpoint`.
    pub account_name: Option<String>,
    /// `account-key`; `None` means `LITESTREAM_AZURE_ACCOUNT_KEY`, read when the client is built.
    pub account_key: Option<Secret>,
    /// `sas-token` (with or without the leading `?`); `None` means `LITESTREAM_AZURE_SAS_TOKEN`.
    /// A SAS token wins over an account key, as in Litestream.
    pub sas_token: Option<Secret>,
    /// The container (`bucket`).
    pub container: String,
    /// Blob name prefix, cleaned, without leading or trailing `/`; may be empty (blobs are
    /// `<path>/ltx/<level>/<name>`, or `ltx/<level>/<name>`).
    pub path: String,
    /// The blob service URL (`endpoint`); `None` means
    /// `https://<account>.blob.core.windows.net`. For Azurite:
    /// `http://127.0.0.1:10000/devstoreaccount1`.
    pub endpoint: Option<String>,
}

impl AbsTarget {
    /// `abs://account@container/path` (no secrets).
    pub fn describe(&self) -> String {
        let account = self
            .account_name
            .as_deref()
            .map(|a| format!("{a}@"))
            .unwrap_or_default();
        format!("abs://{account}{}/{}", self.container, self.path)
    }
}
