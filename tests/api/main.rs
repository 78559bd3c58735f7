mod downloads;
mod files;
mod helpers;
mod restart;
mod upload_errors;
mod uploads;
