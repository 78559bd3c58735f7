mod cli;
mod downloads;
mod files;
mod helpers;
mod openapi;
mod restart;
mod upload_errors;
mod uploads;
