//! AWS Glue, where Athena finds tables: the Iceberg catalog on Glue ([`catalog`]), and what
//! `sluice catalog sync` shares with it (the client, Hive column types).

pub mod catalog;
mod hive;

pub use catalog::GlueCatalog;
pub use hive::hive_type;

use aws_sdk_glue::Client;
use aws_sdk_glue::error::{DisplayErrorContext, SdkError};

/// A Glue client: credentials and region from the AWS chain, `region` and `endpoint` (a
/// stand-in such as moto or LocalStack) overriding them.
pub async fn client(endpoint: Option<&str>, region: Option<&str>) -> Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_string()));
    }
    Client::new(&loader.load().await)
}

/// Whether a Glue call failed because the database or table is not there.
pub fn is_not_found<E, R>(err: &SdkError<E, R>) -> bool
where
    E: aws_sdk_glue::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "EntityNotFoundException")
}

/// Whether a Glue call failed because the name is taken.
pub fn is_already_there<E, R>(err: &SdkError<E, R>) -> bool
where
    E: aws_sdk_glue::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "AlreadyExistsException")
}

/// A Glue error's text with its causes (the SDK's `Display` says only "service error").
pub fn describe<E, R>(err: SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    DisplayErrorContext(err).to_string()
}
