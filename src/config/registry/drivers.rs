//! The object-store drivers' sections (`storage.s3`, `storage.gcs`, `storage.azure`), read with
//! their `REGISTRY_STORAGE_<DRIVER>_*` overrides and the v3 registry's own checks
//! (`registry/storage/driver/{s3-aws,gcs,azure}`): what it would refuse is refused, naming the key.

use super::{Params, scalar};
use crate::storage::bucket::{BucketRoot, ClientSecret, Service};

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A driver parameter: its environment override, or the section's value. Nested keys
/// (`credentials.type`) are named with a dot and overridden as `..._CREDENTIALS_TYPE`.
fn param(driver: &str, params: &Params, env: Env, name: &str) -> Result<Option<String>, String> {
    let var = format!(
        "REGISTRY_STORAGE_{}_{}",
        driver.to_uppercase(),
        name.replace('.', "_").to_uppercase()
    );
    if let Some(v) = env(&var) {
        return Ok(Some(v));
    }
    match name.split_once('.') {
        None => scalar(params, driver, name),
        Some((map, key)) => match params.get(map) {
            None | Some(crate::yaml::Value::Null) => Ok(None),
            Some(crate::yaml::Value::Mapping(m)) => {
                let inner: Params = (m.iter())
                    .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.clone())))
                    .collect();
                scalar(&inner, &format!("{driver}.{map}"), key)
            }
            Some(_) => Err(format!("storage.{driver}.{map} is not a map")),
        },
    }
}

fn prefix(root: Option<String>) -> String {
    root.unwrap_or_default().trim_matches('/').to_string()
}

/// The bucket root a driver's section names.
pub(super) fn bucket_root(driver: &str, params: &Params, env: Env) -> Result<BucketRoot, String> {
    match driver {
        "s3" => s3(params, env),
        "gcs" => gcs(params, env),
        _ => azure(params, env),
    }
}

fn s3(params: &Params, env: Env) -> Result<BucketRoot, String> {
    let key = |name: &str| param("s3", params, env, name);
    let bucket = key("bucket")?.ok_or("storage.s3.bucket is not set")?;
    let endpoint = key("regionendpoint")?;
    if let Some(e) = &endpoint {
        crate::endpoint::check(e).map_err(|why| format!("storage.s3.regionendpoint: {why}"))?;
    }
    Ok(BucketRoot {
        service: Service::S3,
        bucket,
        prefix: prefix(key("rootdirectory")?),
        endpoint,
        region: key("region")?,
        access_key: key("accesskey")?,
        secret_key: key("secretkey")?,
        session_token: key("sessiontoken")?,
        ..BucketRoot::default()
    })
}

/// The gcs driver: `bucket`, `rootdirectory`, and `keyfile` (a service account key file) or
/// `credentials` (the key's fields inline); neither means Google's default credentials.
fn gcs(params: &Params, env: Env) -> Result<BucketRoot, String> {
    let key = |name: &str| param("gcs", params, env, name);
    let bucket = key("bucket")?.ok_or("no bucket parameter provided (storage.gcs.bucket)")?;
    let key_file = key("keyfile")?.map(std::path::PathBuf::from);
    if let Some(f) = &key_file {
        // The registry reads it at start, and refuses to start without it.
        std::fs::metadata(f).map_err(|e| format!("storage.gcs.keyfile {}: {e}", f.display()))?;
    }
    let key_json = match (&key_file, params.get("credentials")) {
        (None, Some(crate::yaml::Value::Mapping(m))) => Some(
            serde_json::to_string(m)
                .map_err(|e| format!("storage.gcs.credentials: not a service account key ({e})"))?,
        ),
        (None, Some(crate::yaml::Value::Null) | None) | (Some(_), _) => None,
        (None, Some(_)) => {
            return Err("the credentials were not specified in the correct format (storage.gcs.credentials must be a map)".into());
        }
    };
    Ok(BucketRoot {
        service: Service::Gcs,
        bucket,
        prefix: prefix(key("rootdirectory")?),
        key_file,
        key_json,
        ..BucketRoot::default()
    })
}

/// The azure driver (v3): `accountname`, `container`, `rootdirectory`, `realm` or `serviceurl`,
/// and `credentials.type`: `shared_key` (with `accountkey`), `client_secret` (`tenantid`,
/// `clientid`, `secret`) or `default_credentials` (the environment, workload or managed
/// identity).
fn azure(params: &Params, env: Env) -> Result<BucketRoot, String> {
    let key = |name: &str| param("azure", params, env, name);
    let account = key("accountname")?
        .ok_or("no accountname parameter provided (storage.azure.accountname)")?;
    let container =
        key("container")?.ok_or("no container parameter provided (storage.azure.container)")?;
    let realm = key("realm")?.unwrap_or_else(|| "core.windows.net".into());
    let endpoint = match key("serviceurl")? {
        Some(url) => Some(url),
        None if realm != "core.windows.net" => Some(format!("https://{account}.blob.{realm}")),
        None => None,
    };
    if let Some(e) = &endpoint {
        crate::endpoint::check(e).map_err(|why| format!("storage.azure.serviceurl: {why}"))?;
    }
    let mut root = BucketRoot {
        service: Service::Azure,
        bucket: container,
        prefix: prefix(key("rootdirectory")?),
        endpoint,
        account: Some(account),
        ..BucketRoot::default()
    };
    match key("credentials.type")?.as_deref() {
        Some("shared_key") => {
            root.account_key = Some(
                key("accountkey")?
                    .ok_or("credentials type shared_key needs storage.azure.accountkey")?,
            );
        }
        Some("client_secret") => {
            let need = |name: &str| {
                key(&format!("credentials.{name}"))?.ok_or(format!(
                    "credentials type client_secret needs storage.azure.credentials.{name}"
                ))
            };
            root.client_secret = Some(ClientSecret {
                tenant_id: need("tenantid")?,
                client_id: need("clientid")?,
                secret: need("secret")?,
            });
        }
        Some("default_credentials") => {}
        other => {
            return Err(format!(
                "invalid credentials type: {:?} (the v3 registry refuses it: give storage.azure.credentials.type shared_key, client_secret or default_credentials)",
                other.unwrap_or("")
            ));
        }
    }
    Ok(root)
}
