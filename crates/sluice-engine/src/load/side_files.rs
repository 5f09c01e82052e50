//! Where `sluice load` writes alerts, late events and dead letters: one NDJSON file per topic.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sluice_kafka::side::SideRecord;

/// Side records as NDJSON, one file per topic: `{"key", "headers", "value"}` with the bytes
/// as UTF-8 text (invalid sequences replaced).
pub(super) struct SideFiles {
    dir: Option<PathBuf>,
    open: std::collections::HashMap<String, BufWriter<File>>,
}

impl SideFiles {
    pub fn new(dir: Option<&Path>) -> Result<Self> {
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(Self {
            dir: dir.map(Path::to_path_buf),
            open: Default::default(),
        })
    }

    pub fn write(&mut self, records: &[SideRecord]) -> Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        for record in records {
            if !self.open.contains_key(&record.topic) {
                let path = dir.join(format!("{}.ndjson", record.topic));
                let file =
                    File::create(&path).with_context(|| format!("creating {}", path.display()))?;
                self.open.insert(record.topic.clone(), BufWriter::new(file));
            }
            let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
            let mut headers: serde_json::Map<String, serde_json::Value> = record
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), text(v).into()))
                .collect();
            for (k, v) in record.source_headers() {
                headers.insert(k.to_string(), v.into());
            }
            let line = serde_json::json!({
                "key": record.key.as_deref().map(text),
                "headers": headers,
                "value": text(&record.payload),
            });
            let out = self.open.get_mut(&record.topic).expect("opened above");
            serde_json::to_writer(&mut *out, &line)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        for (topic, mut out) in self.open {
            out.flush()
                .with_context(|| format!("writing the side file of {topic}"))?;
        }
        Ok(())
    }
}
