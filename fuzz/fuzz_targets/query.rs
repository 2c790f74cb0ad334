//! `GET /v2/images` query strings, parsed as the handler parses them: never panics.
#![no_main]

use glance_rs::domain::query::ListQuery;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(input)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let _ = ListQuery::parse(&pairs, 25, 1000);
});
