//! Azure Blob Storage replicas (`type: abs`): turns an [`AbsTarget`] into an
//! [`ObjectClient`] over `object_store`'s Azure store, with Litestream's credential rules.
//!
//! Everything after the store is built (naming `<path>/ltx/<level>/<name>`, the
//! `litestreamtimestamp` metadata, listing, streaming, probing) is the shared object client
//! with [`ObjectFlavor::ABS`](super::object::ObjectFlavor::ABS).
//!
//! Credentials, in Litestream's order: a SAS token (`sas-token`, else
//! `LITESTREAM_AZURE_SAS_TOKEN`), else the account key (`account-key`, else
//! `LITESTREAM_AZURE_ACCOUNT_KEY`) with `account-name`, else Azure's default chain as
//! `object_store` implements it (`AZURE_*` variables: service principal, workload identity,
//! managed identity). The endpoint defaults to `https://<account>.blob.core.windows.net`; for
//! Azurite it is `http://127.0.0.1:10000/devstoreaccount1`.

use std::sync::Arc;

use object_store::azure::MicrosoftAzureBuilder;

use super::object::{ObjectClient, retry_config, store_client_options};
use super::{ClientError, NetworkOptions, ReplicaMetrics};
use crate::target::{AbsTarget, ReplicaKind};

/// Litestream's variable for the account key, used when `account-key` is not set.
pub const ACCOUNT_KEY_ENV: &str = "LITESTREAM_AZURE_ACCOUNT_KEY";
/// Litestream's variable for a SAS token, used when `sas-token` is not set.
pub const SAS_TOKEN_ENV: &str = "LITESTREAM_AZURE_SAS_TOKEN";

/// The account name used to build requests when only an endpoint and a SAS token are given
/// (a SAS request is not signed with the account name).
const SAS_ONLY_ACCOUNT: &str = "sas";

impl ObjectClient {
    /// An Azure Blob Storage client for a target. Fails, naming the setting, when the account
    /// name is missing (without an endpoint), the endpoint is not a URL, or the key or SAS
    /// token is malformed.
    pub fn abs(
        target: &AbsTarget,
        network: &NetworkOptions,
        metrics: Option<ReplicaMetrics>,
    ) -> Result<ObjectClient, ClientError> {
        let location = target.describe();
        let config = |m: String| ClientError::Config(format!("{location}: {m}"));
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let sas_token = target
            .sas_token
            .as_ref()
            .map(|s| s.expose().to_string())
            .or_else(|| env(SAS_TOKEN_ENV));
        let account_key = target
            .account_key
            .as_ref()
            .map(|k| k.expose().to_string())
            .or_else(|| env(ACCOUNT_KEY_ENV));
        let account = match (&target.account_name, &target.endpoint, &sas_token) {
            (Some(a), _, _) => a.clone(),
            (None, Some(_), Some(_)) => SAS_ONLY_ACCOUNT.to_string(),
            (None, Some(_), None) => {
                return Err(config(
                    "`account-name` is required unless a `sas-token` is used (abs://account@container/path)"
                        .to_string(),
                ));
            }
            (None, None, _) => {
                return Err(config(
                    "`account-name` is required when `endpoint` is not set (abs://account@container/path)"
                        .to_string(),
                ));
            }
        };

        let mut client_options = store_client_options(network);
        // Litestream's default credential chain reads the environment; so does this one.
        let mut builder = MicrosoftAzureBuilder::from_env()
            .with_use_emulator(false)
            .with_account(&account)
            .with_container_name(&target.container)
            .with_retry(retry_config(network));
        if let Some(endpoint) = &target.endpoint {
            url::Url::parse(endpoint)
                .map_err(|e| config(format!("invalid `endpoint` {endpoint:?}: {e}")))?;
            if endpoint.starts_with("http://") {
                client_options = client_options.with_allow_http(true);
            }
            builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
        }
        builder = match (sas_token, account_key) {
            (Some(sas), _) => builder
                .with_config(
                    object_store::azure::AzureConfigKey::SasKey,
                    sas.trim_start_matches('?'),
                )
                .with_credential_type("sas_token"),
            (None, Some(key)) => {
                if target.account_name.is_none() {
                    return Err(config(format!(
                        "an account key (`account-key` or {ACCOUNT_KEY_ENV}) needs `account-name`"
                    )));
                }
                builder
                    .with_access_key(key)
                    .with_credential_type("access_key")
            }
            (None, None) => builder,
        };
        let store = builder
            .with_client_options(client_options)
            .build()
            .map_err(|e| {
                config(format!(
                    "Azure Blob Storage client (check `account-key`, `sas-token`, `endpoint`): {e}"
                ))
            })?;
        Ok(ObjectClient::from_store(
            ReplicaKind::Abs,
            Arc::new(store),
            &target.path,
            location.clone(),
        )?
        .with_network(network, metrics))
    }
}
