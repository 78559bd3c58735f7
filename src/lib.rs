//! ferry: every upload and download strategy of the FastAPI benchmark, as safe endpoints of one actix-web service.

pub mod config;
pub mod download;
pub mod error;
pub mod files;
pub mod health;
pub mod openapi;
pub mod startup;
pub mod storage;
pub mod upload;
