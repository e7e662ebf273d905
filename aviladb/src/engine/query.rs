//! Queries on the engine: one read snapshot per page.

use std::ops::Bound;

use redb::{ReadTransaction, TableDefinition};
use serde_json::Value;

use super::{Engine, RawDocument, docs_table, record};
use crate::error::Result;
use crate::query::exec::{self, Explain, PageOptions, QueryPage, Source};
use crate::query::plan::{self, Access};
use crate::query::{QuerySpec, parse, token};

/// The rows of one collection in one snapshot.
struct Snapshot<'t> {
    txn: &'t ReadTransaction,
    table: u64,
}

impl Source for Snapshot<'_> {
    fn rows(
        &self,
        access: &Access,
        after: Option<&[u8]>,
        each: &mut dyn FnMut(&[u8], Value) -> Result<bool>,
    ) -> Result<()> {
        match access {
            Access::Scan => {
                let name = docs_table(self.table);
                let table = self
                    .txn
                    .open_table(TableDefinition::<&[u8], &[u8]>::new(&name))?;
                let start = match after {
                    Some(a) => Bound::Excluded(a),
                    None => Bound::Unbounded,
                };
                for entry in table.range::<&[u8]>((start, Bound::Unbounded))? {
                    let (key, value) = entry?;
                    let (seq, ts_micros, json) = record::decode_raw(value.value())?;
                    let doc = RawDocument {
                        seq,
                        ts_micros,
                        json,
                    }
                    .into_value()?;
                    if !each(key.value(), doc)? {
                        break;
                    }
                }
                Ok(())
            }
        }
    }
}

impl Engine {
    /// Runs one page of a query on collection `coll`.
    pub fn query(
        &self,
        db: &str,
        coll: &str,
        spec: &QuerySpec,
        options: &PageOptions,
    ) -> Result<QueryPage> {
        let query = parse::parse(&spec.text)?;
        let params = spec.params()?;
        exec::check_params(&query, &params)?;
        let (info, txn) = self.snapshot(db, coll)?;
        let fp = token::fingerprint(info.table, &spec.text, &spec.params_fingerprint());
        let plan = plan::plan(&query);
        let source = Snapshot {
            txn: &txn,
            table: info.table,
        };
        exec::run(&source, &plan, &query, &params, fp, options)
    }

    /// How a query would run, without running it.
    pub fn explain(&self, db: &str, coll: &str, spec: &QuerySpec) -> Result<Explain> {
        let query = parse::parse(&spec.text)?;
        self.collection(db, coll)?;
        Ok(plan::plan(&query).explain(&query))
    }
}
