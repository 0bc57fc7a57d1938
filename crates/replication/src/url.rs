//! Replica URLs, as Litestream reads them (`docs/replication.md#replica-urls`).
//!
//! Owns parsing `file:///abs/path`, `abs://[account@]container/path` and
//! `s3://bucket/prefix?endpoint=…&region=…` (with the recognised provider hosts and the
//! query-parameter aliases) and the one rule for combining
//! S3 settings from a URL with explicit config keys (`resolve_s3`). A URL becomes the same
//! [`ReplicaTarget`] a config `replica:` entry does. Unknown query parameters are errors that
//! name them (Litestream ignores them silently).

use std::path::PathBuf;

use ::url::Url;

use crate::target::{AbsTarget, FileTarget, ReplicaKind, ReplicaTarget, S3Target, Secret};

/// Litestream's (and the AWS SDK's) minimum multipart part size.
pub(crate) const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// The region used with a custom endpoint when none is given.
pub(crate) const DEFAULT_REGION: &str = "us-east-1";

/// Errors from parsing a replica URL or resolving S3 settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("invalid replica URL {url:?}: {reason}")]
    Invalid { url: String, reason: String },
    #[error(
        "replica URL {0:?} has no scheme (expected file:///path, s3://bucket/prefix or abs://account@container/path)"
    )]
    NoScheme(String),
    #[error("unknown replica URL scheme {scheme:?} in {url:?} (expected file, s3 or abs)")]
    UnknownScheme { scheme: String, url: String },
    #[error(
        "file replica URL {0:?} must name an absolute path as file:///abs/path (three slashes)"
    )]
    FileNotAbsolute(String),
    #[error("unknown query parameter(s) {names} in replica URL {url:?}; known: {known}")]
    UnknownParameter {
        names: String,
        url: String,
        known: String,
    },
    #[error("invalid value {value:?} for replica URL parameter {name:?}: {reason}")]
    BadParameter {
        name: String,
        value: String,
        reason: String,
    },
    #[error("bucket required for s3 replica")]
    MissingBucket,
    #[error("container required for abs replica URL {0:?} (abs://[account@]container/path)")]
    MissingContainer(String),
    #[error(
        "s3 replica {bucket:?} needs a non-empty path (key prefix), e.g. s3://{bucket}/mydb; \
         Litestream writes an empty prefix inconsistently"
    )]
    EmptyPrefix { bucket: String },
    #[error("s3 part size {0} bytes is below the minimum of 5 MiB (5242880 bytes)")]
    PartSizeTooSmall(u64),
    #[error("s3 concurrency must be a positive integer")]
    BadConcurrency,
}

/// Parses a replica URL into the target a client is built from.
pub fn parse_replica_url(raw: &str) -> Result<ReplicaTarget, UrlError> {
    match parse_url_parts(raw)? {
        UrlParts::File(path) => Ok(ReplicaTarget::File(FileTarget { path })),
        UrlParts::S3(parts) => resolve_s3(&S3Keys::default(), Some(parts)).map(ReplicaTarget::S3),
        UrlParts::Abs(target) => Ok(ReplicaTarget::Abs(target)),
        UrlParts::Other { kind, location } => Ok(ReplicaTarget::Unsupported { kind, location }),
    }
}

/// True when `s` looks like a URL (`scheme://`), as Litestream's `IsURL`.
pub fn is_url(s: &str) -> bool {
    match s.find("://") {
        Some(i) if i > 0 => s[..i]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        _ => false,
    }
}

/// What a URL says, before it is combined with config keys.
#[allow(clippy::large_enum_variant)] // short-lived
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UrlParts {
    File(PathBuf),
    S3(S3UrlParts),
    /// Account, container and path; credentials and endpoint come from config keys or the
    /// environment only (Litestream reads no query parameters for abs).
    Abs(AbsTarget),
    Other {
        kind: ReplicaKind,
        location: String,
    },
}

/// The S3 settings a URL carries; `None` where the URL says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct S3UrlParts {
    pub bucket: String,
    pub path: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub force_path_style: bool,
    pub skip_verify: Option<bool>,
    pub sign_payload: Option<bool>,
    pub require_content_md5: Option<bool>,
    pub storage_class: Option<String>,
    pub part_size: Option<u64>,
    pub concurrency: Option<usize>,
    pub sse_customer_algorithm: Option<String>,
    pub sse_customer_key: Option<String>,
    pub sse_kms_key_id: Option<String>,
}

/// S3 settings from config keys (`None`/empty = not set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct S3Keys {
    pub bucket: Option<String>,
    pub path: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub force_path_style: Option<bool>,
    pub skip_verify: Option<bool>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub sign_payload: Option<bool>,
    pub require_content_md5: Option<bool>,
    pub storage_class: Option<String>,
    pub part_size: Option<u64>,
    pub concurrency: Option<i64>,
    pub sse_customer_algorithm: Option<String>,
    pub sse_customer_key: Option<String>,
    pub sse_kms_key_id: Option<String>,
}

const S3_PARAMS: &[&str] = &[
    "endpoint",
    "region",
    "forcePathStyle",
    "force-path-style",
    "skipVerify",
    "skip-verify",
    "signPayload",
    "sign-payload",
    "requireContentMD5",
    "require-content-md5",
    "storageClass",
    "storage-class",
    "partSize",
    "part-size",
    "concurrency",
    "sseCustomerAlgorithm",
    "sseCustomerKey",
    "sseCustomerKeyMD5",
    "sseKmsKeyId",
];

pub(crate) fn parse_url_parts(raw: &str) -> Result<UrlParts, UrlError> {
    let invalid = |reason: String| UrlError::Invalid {
        url: raw.to_string(),
        reason,
    };
    if !is_url(raw) {
        return Err(UrlError::NoScheme(raw.to_string()));
    }
    if raw
        .get(..9)
        .is_some_and(|p| p.eq_ignore_ascii_case("s3://arn:"))
    {
        return parse_access_point(raw);
    }
    let url = Url::parse(raw).map_err(|e| invalid(e.to_string()))?;
    let scheme = url.scheme().to_string();
    let kind = ReplicaKind::parse(&scheme).ok_or_else(|| UrlError::UnknownScheme {
        scheme: scheme.clone(),
        url: raw.to_string(),
    })?;
    match kind {
        ReplicaKind::File => {
            check_params(&url, raw, &[])?;
            match url.host_str() {
                None | Some("") | Some("localhost") => {}
                Some(_) => return Err(UrlError::FileNotAbsolute(raw.to_string())),
            }
            let path = url
                .to_file_path()
                .map_err(|()| UrlError::FileNotAbsolute(raw.to_string()))?;
            Ok(UrlParts::File(clean_path(&path)))
        }
        ReplicaKind::S3 => {
            check_params(&url, raw, S3_PARAMS)?;
            let host = match (url.host_str(), url.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_string(),
                (None, _) => String::new(),
            };
            let mut parts = parse_s3_host(&host);
            parts.path = clean_key_prefix(&percent_decode(url.path()));
            apply_s3_query(&mut parts, &url)?;
            Ok(UrlParts::S3(parts))
        }
        ReplicaKind::Abs => {
            check_params(&url, raw, &[])?;
            let container = url.host_str().unwrap_or_default().to_string();
            if container.is_empty() {
                return Err(UrlError::MissingContainer(raw.to_string()));
            }
            Ok(UrlParts::Abs(AbsTarget {
                account_name: Some(percent_decode(url.username())).filter(|a| !a.is_empty()),
                container,
                path: clean_key_prefix(&percent_decode(url.path())),
                ..AbsTarget::default()
            }))
        }
        other => Ok(UrlParts::Other {
            kind: other,
            location: raw.to_string(),
        }),
    }
}

fn check_params(url: &Url, raw: &str, known: &[&str]) -> Result<(), UrlError> {
    let mut unknown: Vec<String> = url
        .query_pairs()
        .map(|(k, _)| k.into_owned())
        .filter(|k| !known.contains(&k.as_str()))
        .collect();
    unknown.dedup();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(UrlError::UnknownParameter {
        names: unknown.join(", "),
        url: raw.to_string(),
        known: if known.is_empty() {
            "none for this scheme".to_string()
        } else {
            known.join(", ")
        },
    })
}

fn query_value(url: &Url, names: &[&str]) -> Option<(String, String)> {
    names.iter().find_map(|name| {
        url.query_pairs()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
    })
}

fn parse_bool_param(name: &str, value: &str) -> Result<bool, UrlError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "t" | "yes" => Ok(true),
        "false" | "0" | "f" | "no" => Ok(false),
        _ => Err(UrlError::BadParameter {
            name: name.to_string(),
            value: value.to_string(),
            reason: "expected true or false".to_string(),
        }),
    }
}

fn parse_positive(name: &str, value: &str) -> Result<u64, UrlError> {
    match value.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(UrlError::BadParameter {
            name: name.to_string(),
            value: value.to_string(),
            reason: "must be a positive integer".to_string(),
        }),
    }
}

fn apply_s3_query(parts: &mut S3UrlParts, url: &Url) -> Result<(), UrlError> {
    let path_style = query_value(url, &["forcePathStyle", "force-path-style"]);
    if let Some((_, endpoint)) = query_value(url, &["endpoint"]) {
        parts.endpoint = Some(ensure_endpoint_scheme(&endpoint));
        // A custom endpoint means path-style addressing unless explicitly turned off.
        parts.force_path_style = true;
    }
    if let Some((_, region)) = query_value(url, &["region"]) {
        parts.region = Some(region);
    }
    if let Some((name, v)) = path_style {
        parts.force_path_style = parse_bool_param(&name, &v)?;
    }
    if let Some((name, v)) = query_value(url, &["skipVerify", "skip-verify"]) {
        parts.skip_verify = Some(parse_bool_param(&name, &v)?);
    }
    if let Some((name, v)) = query_value(url, &["signPayload", "sign-payload"]) {
        parts.sign_payload = Some(parse_bool_param(&name, &v)?);
    }
    if let Some((name, v)) = query_value(url, &["requireContentMD5", "require-content-md5"]) {
        parts.require_content_md5 = Some(parse_bool_param(&name, &v)?);
    }
    if let Some((_, v)) = query_value(url, &["storageClass", "storage-class"]) {
        parts.storage_class = Some(v);
    }
    if let Some((name, v)) = query_value(url, &["partSize", "part-size"]) {
        parts.part_size = Some(parse_positive(&name, &v)?);
    }
    if let Some((name, v)) = query_value(url, &["concurrency"]) {
        let n = parse_positive(&name, &v)?;
        parts.concurrency = Some(usize::try_from(n).map_err(|_| UrlError::BadConcurrency)?);
    }
    if let Some((_, v)) = query_value(url, &["sseCustomerAlgorithm"]) {
        parts.sse_customer_algorithm = Some(v);
    }
    if let Some((_, v)) = query_value(url, &["sseCustomerKey"]) {
        parts.sse_customer_key = Some(v);
    }
    if let Some((_, v)) = query_value(url, &["sseKmsKeyId"]) {
        parts.sse_kms_key_id = Some(v);
    }
    Ok(())
}

/// `s3://arn:aws:s3:<region>:<account>:accesspoint/<name>/<prefix>`: the bucket is the ARN
/// up to the access point name.
fn parse_access_point(raw: &str) -> Result<UrlParts, UrlError> {
    let invalid = || UrlError::Invalid {
        url: raw.to_string(),
        reason: "expected s3://arn:aws:s3:<region>:<account>:accesspoint/<name>[/<prefix>]"
            .to_string(),
    };
    let rest = &raw[5..];
    let (arn_path, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let marker = ":accesspoint/";
    let at = arn_path
        .to_ascii_lowercase()
        .find(marker)
        .ok_or_else(invalid)?;
    let name_start = at + marker.len();
    if name_start >= arn_path.len() {
        return Err(invalid());
    }
    let (bucket, key) = match arn_path[name_start..].split_once('/') {
        Some((name, key)) => (&arn_path[..name_start + name.len()], key),
        None => (arn_path, ""),
    };
    let region = bucket.split(':').nth(3).unwrap_or_default().to_string();
    let mut parts = S3UrlParts {
        bucket: bucket.to_string(),
        path: clean_key_prefix(key),
        region: (!region.is_empty()).then_some(region),
        ..S3UrlParts::default()
    };
    // Reuse the query rules with a synthetic URL that carries only the query.
    let synthetic = format!("s3://access-point/?{}", query.unwrap_or_default());
    let url = Url::parse(&synthetic).map_err(|e| UrlError::Invalid {
        url: raw.to_string(),
        reason: e.to_string(),
    })?;
    check_params(&url, raw, S3_PARAMS)?;
    apply_s3_query(&mut parts, &url)?;
    Ok(UrlParts::S3(parts))
}

/// Bucket, region and endpoint from the host of an `s3://` URL (Litestream's `ParseHost`).
fn parse_s3_host(host: &str) -> S3UrlParts {
    let mut p = S3UrlParts::default();
    // MinIO style: `bucket.host:port` (a port, and not a .com cloud host).
    if host.contains(':') && !host.contains(".com") {
        match host.split_once('.') {
            Some((bucket, server)) => {
                p.bucket = bucket.to_string();
                p.endpoint = Some(format!("http://{server}"));
                p.region = Some(DEFAULT_REGION.to_string());
            }
            None => p.endpoint = Some(format!("http://{host}")),
        }
        p.force_path_style = true;
        return p;
    }
    if let Some(rest) = host.strip_suffix(".amazonaws.com") {
        if let Some(bucket) = rest.strip_suffix(".s3") {
            p.bucket = bucket.to_string();
            return p;
        }
        if let Some((pre, region)) = rest.rsplit_once('.')
            && let Some(bucket) = pre.strip_suffix(".s3")
            && !bucket.is_empty()
        {
            p.bucket = bucket.to_string();
            p.region = Some(region.to_string());
            return p;
        }
    }
    if let Some(rest) = host.strip_suffix(".digitaloceanspaces.com") {
        let (bucket, region) = match rest.rsplit_once('.') {
            Some((b, r)) => (b, r),
            None => ("", rest),
        };
        p.bucket = bucket.to_string();
        p.region = Some(region.to_string());
        p.endpoint = Some(format!("https://{region}.digitaloceanspaces.com"));
        return p;
    }
    if let Some((bucket, region)) = split_s3_region_host(host, ".backblazeb2.com") {
        p.bucket = bucket;
        p.endpoint = Some(format!("https://s3.{region}.backblazeb2.com"));
        p.region = Some(region);
        p.force_path_style = true;
        return p;
    }
    if host == "s3.filebase.com" || host.ends_with(".s3.filebase.com") {
        p.bucket = host
            .strip_suffix(".s3.filebase.com")
            .unwrap_or_default()
            .to_string();
        p.endpoint = Some("https://s3.filebase.com".to_string());
        return p;
    }
    if let Some((bucket, region)) = split_s3_region_host(host, ".scw.cloud") {
        p.bucket = bucket;
        p.endpoint = Some(format!("https://s3.{region}.scw.cloud"));
        p.region = Some(region);
        return p;
    }
    p.bucket = host.to_string();
    p
}

/// `[<bucket>.]s3.<region><suffix>` → (bucket, region).
fn split_s3_region_host(host: &str, suffix: &str) -> Option<(String, String)> {
    let rest = host.strip_suffix(suffix)?;
    let (pre, region) = rest.rsplit_once('.')?;
    let bucket = if pre == "s3" {
        ""
    } else {
        pre.strip_suffix(".s3")?
    };
    Some((bucket.to_string(), region.to_string()))
}

/// Adds `http://` for local and private-network hosts and `https://` otherwise.
pub fn ensure_endpoint_scheme(endpoint: &str) -> String {
    if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        return endpoint.to_string();
    }
    if is_local_endpoint(endpoint) {
        format!("http://{endpoint}")
    } else {
        format!("https://{endpoint}")
    }
}

/// Hosts that get `http://` by default: localhost, 127.0.0.1, 10/8, 172.16/12, 192.168/16,
/// `*.local`, `*.localhost`.
pub fn is_local_endpoint(endpoint: &str) -> bool {
    let lower = endpoint.trim().to_ascii_lowercase();
    let hostport = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .unwrap_or(&lower);
    let hostport = hostport.split('/').next().unwrap_or_default();
    let host = match hostport.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => hostport,
    };
    if host == "localhost"
        || host == "127.0.0.1"
        || host.ends_with(".local")
        || host.ends_with(".localhost")
    {
        return true;
    }
    let octets: Vec<u8> = host.split('.').filter_map(|o| o.parse().ok()).collect();
    if octets.len() != 4 || host.split('.').count() != 4 {
        return false;
    }
    matches!(
        (octets[0], octets[1]),
        (10, _) | (192, 168) | (172, 16..=31) | (127, _)
    )
}

/// Combines S3 settings from config keys with those of a URL, as Litestream does: config
/// keys win (except `skipVerify`, which the URL overrides), `url` together with `path` or
/// `bucket` is rejected by the caller, an endpoint turns on path-style addressing, and
/// provider hosts get their defaults.
pub(crate) fn resolve_s3(keys: &S3Keys, url: Option<S3UrlParts>) -> Result<S3Target, UrlError> {
    let url = url.unwrap_or_default();
    let config_endpoint = keys.endpoint.as_deref().filter(|e| !e.is_empty());
    let mut force_path_style = keys.force_path_style.unwrap_or(config_endpoint.is_some());
    if !force_path_style {
        force_path_style = url.force_path_style;
    }
    let endpoint = config_endpoint
        .map(ensure_endpoint_scheme)
        .or(url.endpoint.clone());
    let bucket = keys
        .bucket
        .clone()
        .filter(|b| !b.is_empty())
        .unwrap_or(url.bucket.clone());
    if bucket.is_empty() {
        return Err(UrlError::MissingBucket);
    }
    let path = match keys.path.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => clean_key_prefix(p),
        None => url.path.clone(),
    };
    if path.is_empty() {
        return Err(UrlError::EmptyPrefix { bucket });
    }
    let host = endpoint
        .as_deref()
        .map(endpoint_host)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let tigris = host == "fly.storage.tigris.dev" || host == "t3.storage.dev";
    let path_style_provider = host.ends_with(".backblazeb2.com")
        || host == "s3.filebase.com"
        || host.ends_with(".supabase.co")
        || is_minio_host(&host);
    if keys.force_path_style.is_none() && path_style_provider {
        force_path_style = true;
    }
    let part_size = keys.part_size.or(url.part_size);
    if let Some(size) = part_size
        && size < MIN_PART_SIZE
    {
        return Err(UrlError::PartSizeTooSmall(size));
    }
    let concurrency = match keys.concurrency {
        Some(n) => Some(
            usize::try_from(n)
                .ok()
                .filter(|&n| n > 0)
                .ok_or(UrlError::BadConcurrency)?,
        ),
        None => url
            .concurrency
            .or(host.ends_with(".r2.cloudflarestorage.com").then_some(2)),
    };
    let sse_customer_key = keys
        .sse_customer_key
        .clone()
        .or(url.sse_customer_key.clone())
        .filter(|k| !k.is_empty());
    let sse_customer_algorithm = sse_customer_key.as_ref().map(|_| {
        keys.sse_customer_algorithm
            .clone()
            .or(url.sse_customer_algorithm.clone())
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "AES256".to_string())
    });
    Ok(S3Target {
        bucket,
        path,
        region: keys.region.clone().filter(|r| !r.is_empty()).or(url.region),
        endpoint,
        force_path_style,
        skip_verify: url.skip_verify.or(keys.skip_verify).unwrap_or(false),
        access_key_id: keys.access_key_id.clone().filter(|k| !k.is_empty()),
        secret_access_key: keys
            .secret_access_key
            .clone()
            .filter(|k| !k.is_empty())
            .map(Secret),
        sign_payload: keys.sign_payload.or(url.sign_payload).unwrap_or(true),
        require_content_md5: keys
            .require_content_md5
            .or(url.require_content_md5)
            .unwrap_or(!tigris),
        storage_class: keys
            .storage_class
            .clone()
            .filter(|s| !s.is_empty())
            .or(url.storage_class),
        part_size,
        concurrency,
        sse_customer_key: sse_customer_key.map(Secret),
        sse_customer_algorithm,
        sse_kms_key_id: keys
            .sse_kms_key_id
            .clone()
            .or(url.sse_kms_key_id)
            .filter(|k| !k.is_empty()),
    })
}

/// `host[:port]` of an endpoint URL.
fn endpoint_host(endpoint: &str) -> &str {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .unwrap_or(endpoint);
    rest.split('/').next().unwrap_or_default()
}

/// A `host:port` endpoint that is not a known cloud provider (Litestream's MinIO rule).
fn is_minio_host(host: &str) -> bool {
    host.contains(':')
        && ![
            ".amazonaws.com",
            ".digitaloceanspaces.com",
            ".backblazeb2.com",
            ".filebase.com",
            ".scw.cloud",
            ".r2.cloudflarestorage.com",
            "tigris.dev",
            "t3.storage.dev",
            ".supabase.co",
        ]
        .iter()
        .any(|s| host.contains(s))
}

/// A key prefix cleaned like Go's `path.Clean("/" + p)` without the leading `/`.
pub(crate) fn clean_key_prefix(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    out.join("/")
}

/// A lexically cleaned absolute path (`.` and `..` resolved, no trailing `/`).
pub(crate) fn clean_path(p: &std::path::Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}
