//! sqlite-rest: a PostgREST-compatible REST API over a SQLite database.
//!
//! The binary (`main.rs`) parses the command line and runs it with [`entry`], which calls into these modules: [`cli`] and
//! [`config`] (flags → configuration), [`startup`] (the serve sequence and shutdown), [`db`]
//! (connections, read pool, schema holder, the writer's place), [`http`] (the REST API),
//! [`auth`] (JWT), [`metrics`], [`admin`] (metrics/health server), [`pprof`], [`logging`],
//! [`shutdown`], [`migrate`] and [`demo`]; [`replication`] wires the `replication` crate into
//! start-up and shutdown, and [`restore`] is the `restore` command. The PostgREST dialect itself lives in the `dialect` crate.

// `ApiError` travels only on the cold error path; boxing it would buy nothing measurable.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod entry;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod migrate;
pub mod pprof;
pub mod replication;
pub mod restore;
pub mod shutdown;
pub mod startup;
