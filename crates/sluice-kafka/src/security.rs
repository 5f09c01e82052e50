//! `[kafka.security]` as librdkafka settings, for every client sluice makes. Its files are
//! checked first (readable, PEM holding what the field says), so that a wrong path or a
//! certificate given as a key is refused with the field before anything connects, rather than
//! as librdkafka's account of a failed handshake. TLS uses the system's OpenSSL (rdkafka's
//! `ssl` feature): the distribution keeps it patched, and it adds no C build of its own.

use std::path::Path;

use secrecy::ExposeSecret;
use sluice_core::Settings;
use sluice_core::config::kafka::{KafkaSecurity, Sasl};

use crate::KafkaError;

/// What a PEM file must hold, by the field naming it.
#[derive(Debug, Clone, Copy)]
enum Holds {
    Certificate,
    PrivateKey,
}

/// The librdkafka settings of `security`, after checking its files.
pub fn settings(security: &KafkaSecurity) -> Result<Settings, KafkaError> {
    let mut settings = Settings::default();
    settings.insert("security.protocol", security.protocol.name());
    if let Some(ca) = &security.tls.ca_file {
        check_pem("ca_file", ca, Holds::Certificate)?;
        settings.insert("ssl.ca.location", ca.display().to_string());
    }
    if let Some(client) = &security.tls.client {
        check_pem("cert_file", &client.cert_file, Holds::Certificate)?;
        check_pem("key_file", &client.key_file, Holds::PrivateKey)?;
        let cert = client.cert_file.display().to_string();
        settings.insert("ssl.certificate.location", cert);
        settings.insert("ssl.key.location", client.key_file.display().to_string());
        if let Some(password) = &client.key_password {
            settings.insert("ssl.key.password", password.expose_secret());
        }
    }
    match &security.sasl {
        None => {}
        Some(Sasl::Password {
            mechanism,
            username,
            password,
        }) => {
            settings.insert("sasl.mechanisms", *mechanism);
            settings.insert("sasl.username", username.as_str());
            settings.insert("sasl.password", password.expose_secret());
        }
        Some(Sasl::AwsMskIam { region }) => {
            for (key, value) in crate::msk_iam::settings(region.as_deref())?.exposed() {
                settings.insert(key, value);
            }
        }
    }
    Ok(settings)
}

/// Fails unless `path` is a readable PEM file holding `holds`.
fn check_pem(field: &'static str, path: &Path, holds: Holds) -> Result<(), KafkaError> {
    let wrong = |reason: String| KafkaError::SecurityFile {
        field,
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read(path).map_err(|err| wrong(format!("cannot read it: {err}")))?;
    let text = String::from_utf8_lossy(&text);
    let found = match holds {
        Holds::Certificate => text.contains("-----BEGIN CERTIFICATE-----"),
        // PKCS#8 ("PRIVATE KEY", "ENCRYPTED PRIVATE KEY") and the older RSA/EC forms.
        Holds::PrivateKey => text.contains("PRIVATE KEY-----"),
    };
    if found {
        return Ok(());
    }
    let expected = match holds {
        Holds::Certificate => "a PEM certificate (-----BEGIN CERTIFICATE-----)",
        Holds::PrivateKey => "a PEM private key (-----BEGIN PRIVATE KEY----- or similar)",
    };
    Err(wrong(format!("expected {expected}, found none")))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use sluice_core::config::kafka::{ClientCertificate, SecurityProtocol, Tls};

    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

    fn security(dir: &Path, cert: &str, key: &str) -> KafkaSecurity {
        std::fs::write(dir.join("ca.pem"), CERT).unwrap();
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        KafkaSecurity {
            protocol: SecurityProtocol::SaslSsl,
            tls: Tls {
                ca_file: Some(dir.join("ca.pem")),
                client: Some(ClientCertificate {
                    cert_file: dir.join("cert.pem"),
                    key_file: dir.join("key.pem"),
                    key_password: None,
                }),
            },
            sasl: Some(Sasl::Password {
                mechanism: "SCRAM-SHA-512",
                username: "alice".into(),
                password: "hunter2".into(),
            }),
        }
    }

    #[test]
    fn good_files_become_settings_with_the_password_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(&security(dir.path(), CERT, KEY)).unwrap();
        assert_eq!(settings.expose("security.protocol"), Some("SASL_SSL"));
        assert_eq!(settings.expose("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(settings.expose("sasl.password"), Some("hunter2"));
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn a_missing_file_or_a_certificate_given_as_key_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let err = settings(&security(dir.path(), CERT, CERT))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("kafka.security.key_file: ")
                && err.contains("expected a PEM private key"),
            "{err}"
        );
        let mut missing = security(dir.path(), CERT, KEY);
        missing.tls.ca_file = Some(PathBuf::from("/nonexistent/ca.pem"));
        let err = settings(&missing).unwrap_err().to_string();
        assert!(
            err.starts_with("kafka.security.ca_file: /nonexistent/ca.pem: cannot read it"),
            "{err}"
        );
    }
}
