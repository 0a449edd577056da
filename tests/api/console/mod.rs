//! The web console at `/admin/`: what the server sends (headers, assets), and the console
//! itself in a real browser (headless Chromium over WebDriver; skipped without one).

mod server;
