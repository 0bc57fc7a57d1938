//! Object-store replicas (S3 and S3-compatible services, Azure Blob Storage) through the
//! `object_store` crate. One client serves every object backend; what differs between them is
//! data ([`ObjectFlavor`]) and the store builder ([`ObjectClient::s3`] here,
//! [`ObjectClient::abs`] in [`super::abs`]).
//!
//! Naming (`docs/ltx-and-replica-format.md#replica-layout`): `<prefix>/<%04x level>/<name>` for S3, as Litestream writes it
//! (`mydb/0000/0000000000000001-0000000000000001.ltx`, `mydb/0009/…`), and
//! `<path>/ltx/<decimal level>/<name>` for Azure (`mydb/ltx/0/…`, `mydb/ltx/9/…`). CreatedAt
//! (`docs/ltx-and-replica-format.md#file-timestamps`): the listing's LastModified normally; with [`ListOptions::precise_timestamps`]
//! the user metadata (`litestream-timestamp` on S3, `litestreamtimestamp` on Azure: Go
//! RFC3339Nano, UTC), read with bounded parallel HEADs. Writes carry that metadata and go up
//! as one PUT, or as a multipart (S3) / block-list (Azure) upload when larger than the part
//! size. Reads stream, and `object_store` resumes a dropped body from where it stopped
//! (same ETag).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use ltx::FileName;
use object_store::aws::{AmazonS3Builder, AwsCredential, resolve_bucket_region};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, BackoffConfig, ClientOptions as StoreClientOptions,
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    RetryConfig, StaticCredentialProvider,
};
use tokio::io::AsyncWriteExt;

use super::operation_metrics::{Op, start};
use super::{
    ByteStream, ClientError, DirEntry, EntryKind, ListOptions, NetworkOptions, ReadRange,
    ReplicaClient, ReplicaMetrics, WriteBody, finish_listing, relative_parts,
};
use crate::level::{Level, LtxFileInfo, format_rfc3339_nano};
use crate::target::{ReplicaKind, S3Target};
use crate::url::{DEFAULT_REGION, MIN_PART_SIZE};

/// The user-metadata key holding a file's creation time on S3 (and GCS).
pub(crate) const TIMESTAMP_METADATA_KEY: &str = "litestream-timestamp";
/// The same on Azure Blob Storage (metadata names there are C# identifiers: no hyphen).
pub(crate) const ABS_TIMESTAMP_METADATA_KEY: &str = "litestreamtimestamp";
/// The object the probe writes and deletes (outside every level directory).
const PROBE_OBJECT: &str = ".sqlite-rest-probe";
const DEFAULT_CONCURRENCY: usize = 5;

/// How one object backend differs from the others: how it names files, where it keeps their
/// CreatedAt, and whether it serves suffix ranges. The only differences the client knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ObjectFlavor {
    /// Level directories sit under `<prefix>/ltx/` (Azure) rather than directly under the
    /// prefix (S3).
    pub ltx_segment: bool,
    /// Level directories are `%04x` (`0009`, S3) rather than unpadded decimal (`9`, Azure).
    pub hex_levels: bool,
    /// The user-metadata key holding the LTX header timestamp.
    pub timestamp_key: &'static str,
    /// The service reads `bytes=-n` (S3); otherwise a suffix read asks for the size first
    /// (Azure).
    pub suffix_ranges: bool,
}

impl ObjectFlavor {
    pub(crate) const S3: ObjectFlavor = ObjectFlavor {
        ltx_segment: false,
        hex_levels: true,
        timestamp_key: TIMESTAMP_METADATA_KEY,
        suffix_ranges: true,
    };
    pub(crate) const ABS: ObjectFlavor = ObjectFlavor {
        ltx_segment: true,
        hex_levels: false,
        timestamp_key: ABS_TIMESTAMP_METADATA_KEY,
        suffix_ranges: false,
    };

    /// The naming of an object backend sqlite-rest implements.
    pub(crate) fn of(kind: ReplicaKind) -> Option<ObjectFlavor> {
        match kind {
            ReplicaKind::S3 => Some(ObjectFlavor::S3),
            ReplicaKind::Abs => Some(ObjectFlavor::ABS),
            _ => None,
        }
    }

    /// The name of a level directory (`0009` or `9`).
    pub(crate) fn level_dir(&self, level: Level) -> String {
        if self.hex_levels {
            format!("{:04x}", level.get())
        } else {
            level.get().to_string()
        }
    }

    /// The level a directory name stands for; other spellings (`9` on S3, `09` on Azure)
    /// are not levels, as for Litestream.
    pub(crate) fn parse_level_dir(&self, name: &str) -> Option<Level> {
        let n = if self.hex_levels {
            u8::from_str_radix(name, 16).ok()?
        } else {
            name.parse::<u8>().ok()?
        };
        let level = Level::new(n)?;
        (self.level_dir(level) == name).then_some(level)
    }
}

/// Network options shared by every object-store builder: connect and read timeouts, and no
/// overall request timeout (large snapshots stream).
pub(super) fn store_client_options(network: &NetworkOptions) -> StoreClientOptions {
    StoreClientOptions::new()
        .with_connect_timeout(network.connect_timeout)
        .with_read_timeout(network.read_timeout)
        .with_timeout_disabled()
}

/// The retry policy of every object-store builder.
pub(super) fn retry_config(network: &NetworkOptions) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: network.max_retries,
        retry_timeout: network.retry_timeout,
    }
}

/// A replica in an object store.
#[derive(Debug, Clone)]
pub(crate) struct ObjectClient {
    store: Arc<dyn ObjectStore>,
    kind: ReplicaKind,
    flavor: ObjectFlavor,
    /// Key prefix (`mydb`); empty only for a naming with the `ltx` segment.
    prefix: Path,
    /// The parent of the level directories: the prefix, or `<prefix>/ltx`.
    levels_root: Path,
    location: String,
    metrics: Option<ReplicaMetrics>,
    part_size: usize,
    concurrency: usize,
    storage_class: Option<String>,
    network: NetworkOptions,
    /// Cleared once the store refused a conditional create (`If-None-Match: *`) as a request
    /// it does not support: level-0 files then go up as plain PUTs, and only compaction's
    /// listing check notices another primary (`docs/replication.md`, "Two primaries on one
    /// replica path"). Shared by the clones of one client.
    conditional_creates: Arc<AtomicBool>,
}

impl ObjectClient {
    /// An S3 client for a target (credentials from the target, else the `AWS_*`
    /// environment; region from the target, else `us-east-1` with an endpoint, else looked up
    /// from the bucket).
    pub(crate) async fn s3(
        target: &S3Target,
        network: &NetworkOptions,
        metrics: Option<ReplicaMetrics>,
    ) -> Result<ObjectClient, ClientError> {
        let config = |m: String| ClientError::Config(m);
        if target.bucket.contains(':') {
            return Err(config(format!(
                "S3 access point ARNs ({}) are not supported; use the bucket name",
                target.bucket
            )));
        }
        let mut client_options = store_client_options(network);
        if target.skip_verify {
            client_options = client_options.with_allow_invalid_certificates(true);
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&target.bucket)
            .with_retry(retry_config(network))
            .with_unsigned_payload(!target.sign_payload);
        // Credentials: config keys, else AWS_* (read by from_env), else Litestream's own
        // variables, else the default provider chain (web identity, ECS, IMDS).
        match (&target.access_key_id, &target.secret_access_key) {
            (Some(id), Some(secret)) => {
                // Static keys from the config: no session token from the environment.
                builder = builder.with_credentials(Arc::new(StaticCredentialProvider::new(
                    AwsCredential {
                        key_id: id.clone(),
                        secret_key: secret.expose().to_string(),
                        token: None,
                    },
                )));
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(config(
                    "S3 credentials need both access-key-id and secret-access-key".into(),
                ));
            }
            (None, None) => {
                let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
                if env("AWS_ACCESS_KEY_ID").is_none()
                    && let (Some(id), Some(secret)) = (
                        env("LITESTREAM_ACCESS_KEY_ID"),
                        env("LITESTREAM_SECRET_ACCESS_KEY"),
                    )
                {
                    builder = builder
                        .with_access_key_id(id)
                        .with_secret_access_key(secret);
                }
            }
        }
        let region = match (&target.region, &target.endpoint) {
            (Some(r), _) => r.clone(),
            (None, Some(_)) => DEFAULT_REGION.to_string(),
            (None, None) => match std::env::var("AWS_REGION")
                .ok()
                .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                .filter(|r| !r.is_empty())
            {
                Some(r) => r,
                None => resolve_bucket_region(&target.bucket, &client_options)
                    .await
                    .map_err(|e| {
                        config(format!(
                            "cannot look up the region of bucket {:?} (set `region:`): {e}",
                            target.bucket
                        ))
                    })?,
            },
        };
        builder = builder.with_region(&region);
        match &target.endpoint {
            Some(endpoint) => {
                if endpoint.starts_with("http://") {
                    client_options = client_options.with_allow_http(true);
                }
                let endpoint = if target.force_path_style {
                    endpoint.clone()
                } else {
                    // Virtual-hosted style with a custom endpoint: the bucket goes in the host.
                    match endpoint.split_once("://") {
                        Some((scheme, host)) => format!("{scheme}://{}.{host}", target.bucket),
                        None => endpoint.clone(),
                    }
                };
                builder = builder
                    .with_endpoint(endpoint)
                    .with_virtual_hosted_style_request(!target.force_path_style);
            }
            None => {
                builder = builder.with_virtual_hosted_style_request(!target.force_path_style);
            }
        }
        if let Some(key) = &target.sse_customer_key {
            builder = builder.with_ssec_encryption(key.expose());
        }
        if let Some(kms) = &target.sse_kms_key_id {
            builder = builder.with_sse_kms_encryption(kms);
        }
        let store = builder
            .with_client_options(client_options)
            .build()
            .map_err(|e| config(format!("S3 client for bucket {:?}: {e}", target.bucket)))?;
        let part_size = target.part_size.unwrap_or(MIN_PART_SIZE);
        let mut client = ObjectClient::from_store(
            ReplicaKind::S3,
            Arc::new(store),
            &target.path,
            format!("s3://{}/{}", target.bucket, target.path),
        )?
        .with_network(network, metrics);
        client.part_size = usize::try_from(part_size).unwrap_or(usize::MAX);
        client.concurrency = target.concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1);
        client.storage_class = target.storage_class.clone();
        Ok(client)
    }

    /// The network options and metrics of a built client.
    pub(super) fn with_network(
        mut self,
        network: &NetworkOptions,
        metrics: Option<ReplicaMetrics>,
    ) -> ObjectClient {
        self.network = *network;
        self.metrics = metrics;
        self
    }

    /// A client over any object store with `kind`'s naming ([`ObjectFlavor::of`]), e.g. an
    /// in-memory store wrapped to inject faults in tests.
    pub(crate) fn from_store(
        kind: ReplicaKind,
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        location: String,
    ) -> Result<ObjectClient, ClientError> {
        let flavor = ObjectFlavor::of(kind).ok_or_else(|| {
            ClientError::Config(format!("{kind} object naming is not implemented"))
        })?;
        let cleaned = crate::url::clean_key_prefix(prefix);
        // Without the `ltx` segment an empty prefix would put the level directories at the
        // bucket root, which Litestream writes inconsistently
        // (`docs/ltx-and-replica-format.md#s3-replicas`).
        if cleaned.is_empty() && !flavor.ltx_segment {
            return Err(ClientError::Config(format!(
                "{location}: an object-store replica needs a non-empty key prefix"
            )));
        }
        let prefix = Path::parse(&cleaned)
            .map_err(|e| ClientError::Config(format!("{location}: invalid key prefix: {e}")))?;
        let levels_root = if flavor.ltx_segment {
            prefix.clone().join("ltx")
        } else {
            prefix.clone()
        };
        Ok(ObjectClient {
            store,
            kind,
            flavor,
            prefix,
            levels_root,
            location,
            metrics: None,
            part_size: usize::try_from(MIN_PART_SIZE).unwrap_or(usize::MAX),
            concurrency: DEFAULT_CONCURRENCY,
            storage_class: None,
            network: NetworkOptions::default(),
            conditional_creates: Arc::new(AtomicBool::new(true)),
        })
    }

    /// The storage class (S3) or access tier (Azure, e.g. `Hot`) every upload asks for.
    pub(super) fn with_storage_class(mut self, class: Option<String>) -> ObjectClient {
        self.storage_class = class;
        self
    }

    /// The key of a level directory: `<prefix>/<%04x level>` (S3), `<prefix>/ltx/<level>`
    /// (Azure).
    pub(crate) fn level_key(&self, level: Level) -> Path {
        self.levels_root.clone().join(self.flavor.level_dir(level))
    }

    /// The key of a file: the level directory's key and the name.
    pub(crate) fn file_key(&self, level: Level, name: FileName) -> Path {
        self.level_key(level).join(name.to_string())
    }

    /// The key of a `/`-separated path relative to the prefix.
    fn relative_key(&self, rel: &str) -> Result<Path, ClientError> {
        let mut key = self.prefix.clone();
        for part in relative_parts(rel)? {
            key = key.join(part);
        }
        Ok(key)
    }

    /// A GET's body as a stream.
    fn body(&self, result: object_store::GetResult) -> ByteStream {
        let location = self.location.clone();
        result
            .into_stream()
            .map_err(move |e| ClientError::Backend {
                replica: location.clone(),
                operation: "read",
                code: error_code(&e),
                message: error_chain(&e),
            })
            .boxed()
    }

    fn type_label(&self) -> &'static str {
        self.kind.as_str()
    }

    fn error(&self, operation: &'static str, e: object_store::Error) -> ClientError {
        match e {
            object_store::Error::NotFound { path, .. } => ClientError::NotFound {
                replica: self.location.clone(),
                what: path,
            },
            object_store::Error::AlreadyExists { path, .. } => ClientError::AlreadyExists {
                replica: self.location.clone(),
                what: path,
            },
            other => ClientError::Backend {
                replica: self.location.clone(),
                operation,
                code: error_code(&other),
                message: error_chain(&other),
            },
        }
    }

    /// Counts a failed operation under its error code and turns the error into ours.
    fn failed(&self, op: Op<'_>, operation: &'static str, e: object_store::Error) -> ClientError {
        op.err(error_code(&e));
        self.error(operation, e)
    }

    /// The attributes every file is written with: its CreatedAt in the backend's metadata
    /// key, and the storage class when one is configured.
    fn attributes(&self, created_at: DateTime<Utc>) -> Attributes {
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::Metadata(self.flavor.timestamp_key.into()),
            AttributeValue::from(format_rfc3339_nano(created_at)),
        );
        if let Some(class) = &self.storage_class {
            attributes.insert(Attribute::StorageClass, AttributeValue::from(class.clone()));
        }
        attributes
    }

    async fn head_timestamp(&self, key: &Path) -> Result<Option<DateTime<Utc>>, ClientError> {
        let op = start(self.metrics.as_ref(), self.type_label(), "HEAD");
        match self
            .store
            .get_opts(key, GetOptions::new().with_head(true))
            .await
        {
            Ok(r) => {
                op.ok(1, 0);
                let key = Attribute::Metadata(self.flavor.timestamp_key.into());
                Ok(r.attributes
                    .get(&key)
                    .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                    .map(|t| t.with_timezone(&Utc)))
            }
            Err(e) => Err(self.failed(op, "head", e)),
        }
    }
}

/// An error with its sources, so the cause (connection refused, 403, …) shows.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// True when `e` says the store does not support a conditional create, rather than that the
/// file exists or the request failed: `object_store` itself refuses it for a store configured
/// without conditional puts, and S3-compatible servers that do not know `If-None-Match` on
/// PUT answer 501 Not Implemented (or name the header in a 400).
fn unsupported_condition(e: &object_store::Error) -> bool {
    match e {
        object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. } => {
            true
        }
        object_store::Error::Generic { .. } => {
            let text = error_chain(e);
            // Not a bare "501": keys (TXIDs in hex) can hold it.
            [
                "status code: 501",
                "Not Implemented",
                "NotImplemented",
                "If-None-Match",
            ]
            .iter()
            .any(|t| text.contains(t))
        }
        _ => false,
    }
}

/// The `code` label of `litestream_replica_operation_errors_total`.
fn error_code(e: &object_store::Error) -> &'static str {
    match e {
        object_store::Error::NotFound { .. } => "NotFound",
        object_store::Error::PermissionDenied { .. } => "AccessDenied",
        object_store::Error::Unauthenticated { .. } => "Unauthenticated",
        object_store::Error::Precondition { .. } => "PreconditionFailed",
        object_store::Error::AlreadyExists { .. } => "AlreadyExists",
        _ => "Unknown",
    }
}

#[async_trait]
impl ReplicaClient for ObjectClient {
    fn kind(&self) -> ReplicaKind {
        self.kind
    }

    fn describe(&self) -> String {
        self.location.clone()
    }

    async fn levels(&self) -> Result<Vec<Level>, ClientError> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.levels_root))
            .await
            .map_err(|e| self.error("list", e))?;
        let mut levels: Vec<Level> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename())
            .filter_map(|n| self.flavor.parse_level_dir(n))
            .collect();
        levels.sort();
        Ok(levels)
    }

    async fn list(
        &self,
        level: Level,
        options: ListOptions,
    ) -> Result<Vec<LtxFileInfo>, ClientError> {
        let dir = self.level_key(level);
        let depth = dir.parts().count() + 1;
        let listing = match options.seek {
            // Keys after `<dir>/<seek hex16>` start with a MinTXID ≥ seek.
            Some(seek) => self
                .store
                .list_with_offset(Some(&dir), &dir.clone().join(seek.to_string())),
            None => self.store.list(Some(&dir)),
        };
        let metas: Vec<_> = listing
            .try_collect()
            .await
            .map_err(|e| self.error("list", e))?;
        let mut files: Vec<(LtxFileInfo, Path)> = metas
            .into_iter()
            .filter(|m| m.location.parts().count() == depth)
            .filter_map(|m| {
                let name = m.location.filename()?.parse::<FileName>().ok()?;
                Some((
                    LtxFileInfo {
                        level,
                        name,
                        size: m.size,
                        created_at: m.last_modified,
                    },
                    m.location,
                ))
            })
            .collect();
        if options.precise_timestamps {
            let concurrency = self.network.metadata_concurrency.max(1);
            let keys: Vec<Path> = files.iter().map(|(_, key)| key.clone()).collect();
            let this = self;
            let stamps: Vec<Option<DateTime<Utc>>> = futures::stream::iter(keys)
                .map(move |key| async move { this.head_timestamp(&key).await })
                .buffered(concurrency)
                .try_collect()
                .await?;
            for ((info, _), stamp) in files.iter_mut().zip(stamps) {
                if let Some(t) = stamp {
                    info.created_at = t;
                }
            }
        }
        Ok(finish_listing(
            files.into_iter().map(|(f, _)| f).collect(),
            options.seek,
        ))
    }

    async fn list_dir(&self, dir: &str) -> Result<Vec<DirEntry>, ClientError> {
        let key = self.relative_key(dir)?;
        let root = (key.parts().count() > 0).then_some(&key);
        let listing = self
            .store
            .list_with_delimiter(root)
            .await
            .map_err(|e| self.error("list", e))?;
        let dirs = listing.common_prefixes.iter().filter_map(|p| {
            Some(DirEntry {
                name: p.filename()?.to_string(),
                kind: EntryKind::Dir,
                size: 0,
                created_at: None,
            })
        });
        let files = listing.objects.iter().filter_map(|m| {
            Some(DirEntry {
                name: m.location.filename()?.to_string(),
                kind: EntryKind::File,
                size: m.size,
                created_at: Some(m.last_modified),
            })
        });
        let mut out: Vec<DirEntry> = dirs.chain(files).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn open_path(&self, rel: &str) -> Result<ByteStream, ClientError> {
        let key = self.relative_key(rel)?;
        match self.store.get(&key).await {
            Ok(result) => Ok(self.body(result)),
            Err(e) => Err(self.error("get", e)),
        }
    }

    async fn open(
        &self,
        level: Level,
        name: FileName,
        range: ReadRange,
    ) -> Result<ByteStream, ClientError> {
        let key = self.file_key(level, name);
        let get_range = match range {
            ReadRange::Full => None,
            ReadRange::From(0) => None,
            ReadRange::From(s) => Some(GetRange::Offset(s)),
            ReadRange::Bounded { start, end } if start < end => Some(GetRange::Bounded(start..end)),
            ReadRange::Bounded { .. } => {
                return Err(ClientError::BadRange {
                    replica: self.location.clone(),
                    name: name.to_string(),
                    range,
                });
            }
            ReadRange::Suffix(n) if self.flavor.suffix_ranges => Some(GetRange::Suffix(n)),
            ReadRange::Suffix(n) => match self.store.head(&key).await {
                Ok(meta) if n < meta.size => Some(GetRange::Offset(meta.size - n)),
                Ok(_) => None,
                Err(e) => return Err(self.error("head", e)),
            },
        };
        match self
            .store
            .get_opts(&key, GetOptions::new().with_range(get_range))
            .await
        {
            Ok(result) => Ok(self.body(result)),
            Err(e) => Err(self.error("get", e)),
        }
    }

    async fn write(
        &self,
        level: Level,
        name: FileName,
        body: ByteStream,
        created_at: DateTime<Utc>,
    ) -> Result<LtxFileInfo, ClientError> {
        let key = self.file_key(level, name);
        let attributes = self.attributes(created_at);
        let mut writer = BufWriter::with_capacity(self.store.clone(), key, self.part_size)
            .with_attributes(attributes)
            .with_max_concurrency(self.concurrency);
        let mut completing = false;
        let result = async {
            let mut body = WriteBody::new(body);
            while let Some(chunk) = body.chunk().await? {
                writer.put(chunk).await.map_err(|e| self.error("put", e))?;
            }
            completing = true;
            writer.shutdown().await.map_err(|e| ClientError::Backend {
                replica: self.location.clone(),
                operation: "put",
                code: "PutFailed",
                message: error_chain(&e),
            })?;
            Ok::<_, ClientError>(body.taken())
        }
        .await;
        // A writer that failed while completing cannot be aborted (`object_store` panics):
        // a single PUT left nothing behind, and a multipart upload whose completion failed
        // is left to the bucket's lifecycle rules, as Litestream leaves it.
        if result.is_err() && !completing {
            let _ = writer.abort().await;
        }
        Ok(LtxFileInfo {
            level,
            name,
            size: result?,
            created_at,
        })
    }

    async fn create_bytes(
        &self,
        level: Level,
        name: FileName,
        data: Bytes,
        created_at: DateTime<Utc>,
    ) -> Result<LtxFileInfo, ClientError> {
        let key = self.file_key(level, name);
        let size = data.len() as u64;
        let payload = PutPayload::from(data);
        let put = |mode| PutOptions {
            mode,
            attributes: self.attributes(created_at),
            ..PutOptions::default()
        };
        let created = if self.conditional_creates.load(Ordering::Acquire) {
            match self
                .store
                .put_opts(&key, payload.clone(), put(PutMode::Create))
                .await
            {
                Ok(_) => true,
                Err(e) if unsupported_condition(&e) => {
                    if self.conditional_creates.swap(false, Ordering::AcqRel) {
                        tracing::warn!(
                            replica = %self.location,
                            error = %error_chain(&e),
                            "the object store does not support conditional creates (If-None-Match: *): level-0 files are written with plain PUTs from now on, and a second primary on this replica path is noticed only by the next compaction into level 1"
                        );
                    }
                    false
                }
                Err(e) => return Err(self.error("put", e)),
            }
        } else {
            false
        };
        if !created {
            self.store
                .put_opts(&key, payload, put(PutMode::Overwrite))
                .await
                .map_err(|e| self.error("put", e))?;
        }
        Ok(LtxFileInfo {
            level,
            name,
            size,
            created_at,
        })
    }

    async fn delete(&self, level: Level, names: &[FileName]) -> Result<(), ClientError> {
        if names.is_empty() {
            return Ok(());
        }
        let keys: Vec<Path> = names.iter().map(|&n| self.file_key(level, n)).collect();
        let results: Vec<_> = self
            .store
            .delete_stream(futures::stream::iter(keys.into_iter().map(Ok)).boxed())
            .collect()
            .await;
        for r in results {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error("delete", e)),
            }
        }
        Ok(())
    }

    async fn probe(&self) -> Result<(), ClientError> {
        let key = self.prefix.clone().join(PROBE_OBJECT);
        let check = async {
            let op = start(self.metrics.as_ref(), self.type_label(), "PUT");
            if let Err(e) = self
                .store
                .put(&key, PutPayload::from_static(b"sqlite-rest probe"))
                .await
            {
                return Err(self.failed(op, "probe write", e));
            }
            op.ok(1, 17);
            let op = start(self.metrics.as_ref(), self.type_label(), "LIST");
            if let Err(e) = self
                .store
                .list_with_delimiter(Some(&self.levels_root))
                .await
            {
                return Err(self.failed(op, "list", e));
            }
            op.ok(1, 0);
            let op = start(self.metrics.as_ref(), self.type_label(), "DELETE");
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    op.ok(1, 0);
                    Ok(())
                }
                Err(e) => Err(self.failed(op, "probe delete", e)),
            }
        };
        match tokio::time::timeout(self.network.probe_timeout, check).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::ProbeTimeout {
                replica: self.location.clone(),
                timeout: self.network.probe_timeout,
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fmt;

    use futures::stream::BoxStream;
    use ltx::TxId;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, PutMultipartOptions,
        PutResult,
    };

    use super::*;

    /// An in-memory store that refuses conditional creates as unsupported, as a store
    /// configured without conditional puts (or an S3-compatible server answering 501) does.
    #[derive(Debug)]
    struct NoConditionalPuts(InMemory);

    impl fmt::Display for NoConditionalPuts {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "NoConditionalPuts")
        }
    }

    #[async_trait]
    impl ObjectStore for NoConditionalPuts {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            if opts.mode == PutMode::Create {
                return Err(object_store::Error::NotImplemented {
                    operation: "put_opts with PutMode::Create".into(),
                    implementer: "NoConditionalPuts".into(),
                });
            }
            self.0.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.0.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.0.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.0.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.0.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.0.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.0.copy_opts(from, to, options).await
        }
    }

    fn client(store: Arc<dyn ObjectStore>) -> ObjectClient {
        ObjectClient::from_store(ReplicaKind::S3, store, "db", "s3://bucket/db".into()).unwrap()
    }

    fn name() -> FileName {
        FileName {
            min: TxId(7),
            max: TxId(7),
        }
    }

    async fn stored(client: &ObjectClient) -> Bytes {
        let key = client.file_key(Level::L0, name());
        client.store.get(&key).await.unwrap().bytes().await.unwrap()
    }

    #[tokio::test]
    async fn a_create_never_replaces_a_file_where_the_store_supports_it() {
        let c = client(Arc::new(InMemory::new()));
        let now = Utc::now();
        c.create_bytes(Level::L0, name(), Bytes::from_static(b"ours"), now)
            .await
            .unwrap();
        let second = c
            .create_bytes(Level::L0, name(), Bytes::from_static(b"theirs"), now)
            .await;
        assert!(
            matches!(second, Err(ClientError::AlreadyExists { .. })),
            "{second:?}"
        );
        assert_eq!(stored(&c).await, Bytes::from_static(b"ours"));
    }

    #[tokio::test]
    async fn a_store_without_conditional_creates_gets_plain_puts() {
        let c = client(Arc::new(NoConditionalPuts(InMemory::new())));
        let now = Utc::now();
        c.create_bytes(Level::L0, name(), Bytes::from_static(b"first"), now)
            .await
            .unwrap();
        assert_eq!(stored(&c).await, Bytes::from_static(b"first"));
        assert!(!c.conditional_creates.load(Ordering::Acquire));
        // From now on plain PUTs, in every clone of the client: no refused request first.
        let clone = c.clone();
        clone
            .create_bytes(Level::L0, name(), Bytes::from_static(b"again"), now)
            .await
            .unwrap();
        assert_eq!(stored(&c).await, Bytes::from_static(b"again"));
    }

    #[test]
    fn only_an_unsupported_condition_falls_back() {
        let generic = |msg: &str| object_store::Error::Generic {
            store: "S3",
            source: msg.to_string().into(),
        };
        assert!(unsupported_condition(&generic(
            "Error performing PUT http://s3/db/0000/0000000000000501-0000000000000501.ltx: Server returned non-2xx status code: 501 Not Implemented"
        )));
        assert!(unsupported_condition(&generic(
            "Server returned non-2xx status code: 400 Bad Request: <Code>InvalidArgument</Code><Message>If-None-Match is not supported</Message>"
        )));
        // A key holding "501" and an ordinary failure are not an unsupported condition.
        assert!(!unsupported_condition(&generic(
            "Error performing PUT http://s3/db/0000/0000000000000501-0000000000000501.ltx: Server returned non-2xx status code: 503 Slow Down"
        )));
        assert!(!unsupported_condition(
            &object_store::Error::AlreadyExists {
                path: "x".into(),
                source: "exists".into(),
            }
        ));
    }
}
