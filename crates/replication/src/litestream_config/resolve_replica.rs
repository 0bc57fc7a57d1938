//! Resolution of one replica: `type:`/`url:` and the backend's keys, merged with the
//! top-level replica defaults, into a [`ReplicaTarget`].

use serde_yaml_ng::{Mapping, Value};

use super::defaults;
use super::error::{ConfigError, invalid};
use super::key_errors::{from_mapping, unknown_key};
use super::model::ReplicaConfig;
use super::raw::{RawReplicaOwn, RawReplicaSettings, split_mapping, struct_fields};
use super::units::GoDuration;
use super::values::{expand_path_at, non_empty, positive};
use crate::target::{AbsTarget, FileTarget, ReplicaKind, ReplicaTarget, Secret};
use crate::url::{S3Keys, UrlParts, clean_key_prefix, is_url, parse_url_parts, resolve_s3};

/// An abs `path:` as a blob-name prefix. Litestream 0.5 joins it into blob names as written
/// (`/mydb/` gives `/mydb/ltx/0/…`, a name with a leading empty segment), which
/// `object_store` cannot write; rather than clean it into a different replica, a leading `/`
/// is an error, and so is a `..` segment. The `abs://` URL form is trimmed (Litestream does so too).
pub(super) fn abs_key_prefix(at: &str, p: &str) -> Result<String, ConfigError> {
    if p.starts_with('/') {
        let trimmed = p.trim_start_matches('/');
        return Err(invalid(
            at,
            format!(
                "an abs path must not start with '/': Litestream 0.5 would write blobs named \
                 {p:?} + \"ltx/<level>/<file>\" (a leading empty segment), which sqlite-rest \
                 cannot write, so the two tools would see different replicas; write \
                 `path: {trimmed}` (in both tools' configs)"
            ),
        ));
    }
    if p.split('/').any(|seg| seg == "..") {
        return Err(invalid(
            at,
            format!("an abs path must not contain '..' segments: {p:?}"),
        ));
    }
    Ok(clean_key_prefix(p))
}

pub(super) fn resolve_replica(
    at: &str,
    value: Value,
    global: &RawReplicaSettings,
) -> Result<ReplicaConfig, ConfigError> {
    let map = match value {
        Value::Mapping(m) => m,
        Value::Null => Mapping::new(),
        _ => return Err(invalid(at, "the replica must be a mapping")),
    };
    let own_keys = struct_fields::<RawReplicaOwn>();
    let shared_keys = struct_fields::<RawReplicaSettings>();
    let (own, shared) = split_mapping(&map, own_keys, shared_keys)
        .map_err(|k| unknown_key(at, &k, &[own_keys, shared_keys].concat()))?;
    let own: RawReplicaOwn = from_mapping(own, at)?;
    let mut settings: RawReplicaSettings = from_mapping(shared, at)?;
    settings.inherit(global);

    if let Some(age) = &settings.age
        && (age.identities.as_ref().is_some_and(|v| !v.is_empty())
            || age.recipients.as_ref().is_some_and(|v| !v.is_empty()))
    {
        return Err(ConfigError::Unsupported {
            path: format!("{at}.age"),
            message: "age encryption is not supported by Litestream 0.5".to_string(),
        });
    }
    let url = non_empty(own.url);
    let path = non_empty(own.path);
    if let Some(p) = &path
        && is_url(p)
    {
        return Err(invalid(
            format!("{at}.path"),
            format!("replica path cannot be a url, please use the 'url' field instead: {p}"),
        ));
    }
    let url_parts = url
        .as_deref()
        .map(|u| parse_url_parts(u).map_err(|e| invalid(format!("{at}.url"), e.to_string())))
        .transpose()?;
    let declared = match non_empty(own.kind) {
        None => None,
        Some(t) => Some(ReplicaKind::parse(&t).ok_or_else(|| {
            invalid(
                format!("{at}.type"),
                format!("unknown replica type in config: {t:?}"),
            )
        })?),
    };
    let from_url = url_parts.as_ref().map(|p| match p {
        UrlParts::File(_) => ReplicaKind::File,
        UrlParts::S3(_) => ReplicaKind::S3,
        UrlParts::Abs(_) => ReplicaKind::Abs,
        UrlParts::Other { kind, .. } => *kind,
    });
    if let (Some(d), Some(u)) = (declared, from_url)
        && d != u
    {
        return Err(invalid(
            format!("{at}.type"),
            format!("type {d} conflicts with the url's scheme {u}"),
        ));
    }
    let kind = from_url.or(declared).unwrap_or(ReplicaKind::File);
    let target = match kind {
        ReplicaKind::File => {
            if url.is_some() && path.is_some() {
                return Err(invalid(at, "cannot specify url & path for file replica"));
            }
            let raw_path = match url_parts {
                Some(UrlParts::File(p)) => p.to_string_lossy().into_owned(),
                _ => path.ok_or_else(|| invalid(at, "file replica path required"))?,
            };
            ReplicaTarget::File(FileTarget {
                path: expand_path_at(&format!("{at}.path"), &raw_path)?,
            })
        }
        ReplicaKind::S3 => {
            if url.is_some() && path.is_some() {
                return Err(invalid(at, "cannot specify url & path for s3 replica"));
            }
            if url.is_some() && non_empty(settings.bucket.clone()).is_some() {
                return Err(invalid(at, "cannot specify url & bucket for s3 replica"));
            }
            let sse_customer_key = match non_empty(settings.sse_customer_key_path.clone()) {
                Some(key_path) => {
                    let file = expand_path_at(&format!("{at}.sse-customer-key-path"), &key_path)?;
                    let key = std::fs::read_to_string(&file).map_err(|e| {
                        invalid(
                            format!("{at}.sse-customer-key-path"),
                            format!("cannot read {}: {e}", file.display()),
                        )
                    })?;
                    Some(key.trim().to_string())
                }
                None => settings.sse_customer_key.clone(),
            };
            let keys = S3Keys {
                bucket: settings.bucket.clone(),
                path,
                region: settings.region.clone(),
                endpoint: settings.endpoint.clone(),
                force_path_style: settings.force_path_style,
                skip_verify: settings.skip_verify,
                access_key_id: settings.access_key_id.clone(),
                secret_access_key: settings.secret_access_key.clone(),
                sign_payload: settings.sign_payload,
                require_content_md5: settings.require_content_md5,
                storage_class: settings.storage_class.clone(),
                part_size: settings.part_size.map(|b| b.0),
                concurrency: settings.concurrency,
                sse_customer_algorithm: settings.sse_customer_algorithm.clone(),
                sse_customer_key,
                sse_kms_key_id: settings.sse_kms_key_id.clone(),
            };
            let url_s3 = match url_parts {
                Some(UrlParts::S3(p)) => Some(p),
                _ => None,
            };
            ReplicaTarget::S3(resolve_s3(&keys, url_s3).map_err(|e| invalid(at, e.to_string()))?)
        }
        ReplicaKind::Abs => {
            if url.is_some() && path.is_some() {
                return Err(invalid(at, "cannot specify url & path for abs replica"));
            }
            if url.is_some() && non_empty(settings.bucket.clone()).is_some() {
                return Err(invalid(at, "cannot specify url & bucket for abs replica"));
            }
            let from_url = match url_parts {
                Some(UrlParts::Abs(t)) => t,
                _ => AbsTarget::default(),
            };
            let container = non_empty(settings.bucket.clone())
                .unwrap_or(from_url.container)
                .trim()
                .to_string();
            if container.is_empty() {
                return Err(invalid(
                    format!("{at}.bucket"),
                    "bucket (the container) required for abs replica",
                ));
            }
            let endpoint = non_empty(settings.endpoint.clone());
            if let Some(e) = &endpoint
                && !(e.starts_with("http://") || e.starts_with("https://"))
            {
                return Err(invalid(
                    format!("{at}.endpoint"),
                    format!("expected an http:// or https:// URL, got {e:?}"),
                ));
            }
            ReplicaTarget::Abs(AbsTarget {
                account_name: non_empty(settings.account_name.clone()).or(from_url.account_name),
                account_key: non_empty(settings.account_key.clone()).map(Secret),
                sas_token: non_empty(settings.sas_token.clone()).map(Secret),
                container,
                path: match path {
                    Some(p) => abs_key_prefix(&format!("{at}.path"), &p)?,
                    None => from_url.path,
                },
                endpoint,
            })
        }
        other => ReplicaTarget::Unsupported {
            kind: other,
            location: url
                .or(path)
                .or(non_empty(settings.bucket.clone()))
                .or(non_empty(settings.host.clone()))
                .or(non_empty(settings.webdav_url.clone()))
                .unwrap_or_else(|| format!("type: {other}")),
        },
    };
    let max_sync_ltx_files = match settings.max_sync_ltx_files {
        None => Some(defaults::MAX_SYNC_LTX_FILES),
        Some(n) if n < 0 => {
            return Err(invalid(
                format!("{at}.max-sync-ltx-files"),
                "must not be negative",
            ));
        }
        Some(0) => None,
        Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
    };
    let sync_interval = positive(
        &format!("{at}.sync-interval"),
        settings.sync_interval,
        defaults::SYNC_INTERVAL,
    )?;
    Ok(ReplicaConfig {
        target,
        name: non_empty(own.name),
        sync_interval,
        upload_interval: settings.sync_interval.is_some().then_some(sync_interval),
        max_sync_ltx_files,
        auto_recover: settings.auto_recover.unwrap_or(false),
        validation_interval: settings.validation_interval.and_then(GoDuration::to_std),
    })
}
