//! The upload page at `/`: drag and drop or pick files, each sent with tus (resumable), then listed with the
//! stored files. One HTML file with its own small tus client, no third-party code, built into the binary.

use actix_web::{HttpResponse, http::header, web};

const PAGE: &str = include_str!("index.html");

/// Serves the page at `/`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(page));
}

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ))
        .body(PAGE)
}
