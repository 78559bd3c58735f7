//! ferry: every upload and download strategy of the FastAPI benchmark, as safe endpoints of one actix-web service.
//!
//! The modules form layers, each using only those above it:
//! leaves ([`config`], [`error`], [`auth`], [`links`], [`storage`], [`cache`], [`schema`], [`request_id`], [`logging`], [`metrics`], [`forwarded`]) → [`state`] → the routes ([`upload`],
//! [`download`], [`tus`], [`page`], [`files`], [`health`], gathered by [`routes`]) → [`openapi`] → [`requests`] (ids, metrics and
//! access lines) → [`server`] (the connection level)
//! → [`startup`], which only the binary and the tests use. [`fsck`], the offline check of a data directory, uses
//! only [`storage`].

pub mod auth;
pub mod cache;
pub mod config;
pub mod download;
pub mod error;
pub mod files;
pub mod forwarded;
pub mod fsck;
pub mod health;
pub mod links;
pub mod logging;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod request_id;
pub mod requests;
pub mod routes;
pub mod schema;
pub mod server;
pub mod startup;
pub mod state;
pub mod storage;
pub mod tus;
pub mod upload;
