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
//! `object_store` implements it (service principal, workload identity, managed identity).
//! Only that chain's identity variables are read ([`IDENTITY_ENV`]); other `AZURE_*`
//! variables `object_store` knows (`AZURE_STORAGE_ENDPOINT`, `AZURE_STORAGE_ACCOUNT_KEY`,
//! `AZURE_STORAGE_SAS_KEY`, `AZURE_STORAGE_TOKEN`, …) are ignored, as Litestream ignores them,
//! so none can redirect replica writes or swap credentials. The endpoint is `endpoint`, else
//! `https://<account>.blob.core.windows.net`; for Azurite it is
//! `http://127.0.0.1:10000/devstoreaccount1`.
//!
//! Like Litestream, every upload asks for the Hot access tier. Known differences from
//! Litestream 0.5.17's abs client:
//! - a plain listing dates each file by its upload time (the listing's Last-Modified); only a
//!   listing with [`ListOptions::precise_timestamps`](super::ListOptions) (timestamp restores)
//!   reads the `litestreamtimestamp` metadata, one HEAD per file;
//! - deletes (retention, compaction) go through `object_store`'s Blob Batch requests, which
//!   some SAS tokens cannot make: Azurite serves them to a container-scoped service SAS (what
//!   the tests use for `sas-token`) but not to an account SAS;
//! - a config `path:` starting with `/` is refused at load (Litestream would write blob names
//!   starting with `/`, which `object_store` cannot), see `config`.

use std::sync::Arc;

use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};

use super::object::{ObjectClient, retry_config, store_client_options};
use super::{ClientError, NetworkOptions, ReplicaMetrics};
use crate::target::{AbsTarget, ReplicaKind};

/// Litestream's variable for the account key, used when `account-key` is not set.
pub(crate) const ACCOUNT_KEY_ENV: &str = "LITESTREAM_AZURE_ACCOUNT_KEY";
/// Litestream's variable for a SAS token, used when `sas-token` is not set.
pub(crate) const SAS_TOKEN_ENV: &str = "LITESTREAM_AZURE_SAS_TOKEN";

/// The access tier every upload asks for (`x-ms-access-tier`), as Litestream's do.
const HOT_TIER: &str = "Hot";

/// The account name used to build requests when only an endpoint and a SAS token are given
/// (a SAS request is not signed with the account name).
const SAS_ONLY_ACCOUNT: &str = "sas";

/// The variables of Azure's default credential chain that are passed on to `object_store`
/// (service principal, workload identity, managed identity), with the key each sets.
pub(crate) const IDENTITY_ENV: &[(&str, AzureConfigKey)] = &[
    ("AZURE_CLIENT_ID", AzureConfigKey::ClientId),
    ("AZURE_TENANT_ID", AzureConfigKey::AuthorityId),
    ("AZURE_CLIENT_SECRET", AzureConfigKey::ClientSecret),
    (
        "AZURE_FEDERATED_TOKEN_FILE",
        AzureConfigKey::FederatedTokenFile,
    ),
    ("AZURE_AUTHORITY_HOST", AzureConfigKey::AuthorityHost),
    ("IDENTITY_ENDPOINT", AzureConfigKey::MsiEndpoint),
    ("MSI_ENDPOINT", AzureConfigKey::MsiEndpoint),
    ("AZURE_MSI_ENDPOINT", AzureConfigKey::MsiEndpoint),
    ("AZURE_OBJECT_ID", AzureConfigKey::ObjectId),
    ("AZURE_MSI_RESOURCE_ID", AzureConfigKey::MsiResourceId),
];

impl ObjectClient {
    /// An Azure Blob Storage client for a target. Fails, naming the setting, when the account
    /// name is missing (without an endpoint), the endpoint is not a URL, or the key or SAS
    /// token is malformed.
    pub(crate) fn abs(
        target: &AbsTarget,
        network: &NetworkOptions,
        metrics: Option<ReplicaMetrics>,
    ) -> Result<ObjectClient, ClientError> {
        let location = target.describe();
        let env = |k: &str| std::env::var(k).ok();
        let store = azure_builder(target, network, &env)?
            .build()
            .map_err(|e| {
                ClientError::Config(format!(
                    "{location}: Azure Blob Storage client (check `account-key`, `sas-token`, `endpoint`): {e}"
                ))
            })?;
        Ok(ObjectClient::from_store(
            ReplicaKind::Abs,
            Arc::new(store),
            &target.path,
            location.clone(),
        )?
        .with_network(network, metrics)
        // Litestream uploads with the Hot access tier, not the account's default.
        .with_storage_class(Some(HOT_TIER.to_string())))
    }
}

/// The `object_store` builder for a target, reading the environment through `env` (a
/// parameter so tests can pass one without touching the process environment).
fn azure_builder(
    target: &AbsTarget,
    network: &NetworkOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<MicrosoftAzureBuilder, ClientError> {
    let location = target.describe();
    let config = |m: String| ClientError::Config(format!("{location}: {m}"));
    let env = |k: &str| env(k).filter(|v| !v.is_empty());
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
    // Azure's default credential chain reads its identity variables; nothing else is taken
    // from the environment (see the module doc).
    let mut builder = MicrosoftAzureBuilder::new();
    for (var, key) in IDENTITY_ENV {
        if let Some(value) = env(var) {
            builder = builder.with_config(*key, value);
        }
    }
    builder = builder
        .with_use_emulator(false)
        .with_account(&account)
        .with_container_name(&target.container)
        .with_retry(retry_config(network));
    let endpoint = match &target.endpoint {
        Some(endpoint) => {
            url::Url::parse(endpoint)
                .map_err(|e| config(format!("invalid `endpoint` {endpoint:?}: {e}")))?;
            if endpoint.starts_with("http://") {
                client_options = client_options.with_allow_http(true);
            }
            endpoint.trim_end_matches('/').to_string()
        }
        None => format!("https://{account}.blob.core.windows.net"),
    };
    builder = builder.with_endpoint(endpoint);
    builder = match (sas_token, account_key) {
        (Some(sas), _) => builder
            .with_config(AzureConfigKey::SasKey, sas.trim_start_matches('?'))
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
    Ok(builder.with_client_options(client_options))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::target::Secret;

    fn target() -> AbsTarget {
        AbsTarget {
            account_name: Some("acct".into()),
            container: "c".into(),
            path: "db".into(),
            ..AbsTarget::default()
        }
    }

    /// Every variable `object_store`'s `from_env` would read, with values that must not be used,
    /// plus the identity variables, which must.
    fn hostile_env(k: &str) -> Option<String> {
        match k {
            "AZURE_STORAGE_ENDPOINT" | "AZURE_ENDPOINT" => Some("http://127.0.0.1:9/bogus".into()),
            "AZURE_STORAGE_ACCOUNT_KEY" | "AZURE_STORAGE_ACCESS_KEY" => Some("a2V5".into()),
            "AZURE_STORAGE_SAS_KEY" | "AZURE_STORAGE_SAS_TOKEN" => Some("sv=1&sig=x".into()),
            "AZURE_STORAGE_TOKEN" => Some("bearer".into()),
            "AZURE_STORAGE_ACCOUNT_NAME" => Some("other".into()),
            "AZURE_STORAGE_USE_EMULATOR" => Some("true".into()),
            "AZURE_CLIENT_ID" => Some("client-id".into()),
            "AZURE_TENANT_ID" => Some("tenant-id".into()),
            "AZURE_CLIENT_SECRET" => Some("client-secret".into()),
            "AZURE_FEDERATED_TOKEN_FILE" => Some("/var/run/token".into()),
            "IDENTITY_ENDPOINT" => Some("http://169.254.169.254/msi".into()),
            _ => None,
        }
    }

    #[test]
    fn only_identity_variables_are_read_and_the_endpoint_is_explicit() {
        let b = azure_builder(&target(), &NetworkOptions::default(), &hostile_env).unwrap();
        let expected = [
            (
                AzureConfigKey::Endpoint,
                Some("https://acct.blob.core.windows.net"),
            ),
            (AzureConfigKey::AccountName, Some("acct")),
            (AzureConfigKey::AccessKey, None),
            (AzureConfigKey::SasKey, None),
            (AzureConfigKey::Token, None),
            (AzureConfigKey::CredentialType, None),
            (AzureConfigKey::UseEmulator, Some("false")),
            (AzureConfigKey::ClientId, Some("client-id")),
            (AzureConfigKey::AuthorityId, Some("tenant-id")),
            (AzureConfigKey::ClientSecret, Some("client-secret")),
            (AzureConfigKey::FederatedTokenFile, Some("/var/run/token")),
            (
                AzureConfigKey::MsiEndpoint,
                Some("http://169.254.169.254/msi"),
            ),
        ];
        for (key, want) in expected {
            assert_eq!(b.get_config_value(&key).as_deref(), want, "{key:?}");
        }
        // A configured endpoint wins (and loses its trailing `/`); the bogus one never appears.
        let with_endpoint = AbsTarget {
            endpoint: Some("http://127.0.0.1:10000/devstoreaccount1/".into()),
            account_key: Some(Secret("a2V5".into())),
            ..target()
        };
        let b = azure_builder(&with_endpoint, &NetworkOptions::default(), &hostile_env).unwrap();
        assert_eq!(
            b.get_config_value(&AzureConfigKey::Endpoint).as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
        assert_eq!(
            b.get_config_value(&AzureConfigKey::CredentialType)
                .as_deref(),
            Some("access_key")
        );
    }

    #[test]
    fn litestream_variables_supply_the_key_or_sas_token() {
        // The key alone; then both, where the SAS token wins (Litestream's order).
        for (sas, key, want) in [
            (None, AzureConfigKey::AccessKey, "a2V5"),
            (Some("?sv=1&sig=x"), AzureConfigKey::SasKey, "sv=1&sig=x"),
        ] {
            let env = |k: &str| match k {
                ACCOUNT_KEY_ENV => Some("a2V5".to_string()),
                SAS_TOKEN_ENV => sas.map(str::to_string),
                _ => None,
            };
            let b = azure_builder(&target(), &NetworkOptions::default(), &env).unwrap();
            assert_eq!(b.get_config_value(&key).as_deref(), Some(want), "{key:?}");
        }
    }
}
