//! Client filenames are metadata only: this turns whatever a client sent into a name safe to show and to put in
//! a `Content-Disposition` header. It never becomes part of a path.

/// The name given to uploads whose client sent none, or nothing usable.
pub const DEFAULT_FILENAME: &str = "upload.bin";

/// At most this many bytes of UTF-8 are kept, like most file systems' limit on one name.
pub const MAX_FILENAME_BYTES: usize = 255;

/// Keeps the last path component (either slash), drops control and bidi-override characters, trims white space
/// and caps the length; `.`, `..` and empty names become [`DEFAULT_FILENAME`].
pub fn sanitize(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last.chars().filter(|c| !is_hidden_or_control(*c)).collect();
    let name = truncate_utf8(cleaned.trim(), MAX_FILENAME_BYTES).trim_end();
    match name {
        "" | "." | ".." => DEFAULT_FILENAME.to_owned(),
        name => name.to_owned(),
    }
}

/// Control characters, and the format characters that make a name display as something else
/// (bidi overrides and isolates, zero-width marks, BOM).
fn is_hidden_or_control(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let end = (0..=max).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_components_are_dropped() {
        assert_eq!(sanitize("../../x"), "x");
        assert_eq!(sanitize("/etc/passwd"), "passwd");
        assert_eq!(sanitize("C:\\Windows\\win.ini"), "win.ini");
        assert_eq!(sanitize("dir/"), DEFAULT_FILENAME);
    }

    #[test]
    fn dots_and_empty_names_get_the_default() {
        for raw in ["", ".", "..", "   ", "a/..", "\r\n"] {
            assert_eq!(sanitize(raw), DEFAULT_FILENAME, "{raw:?}");
        }
    }

    #[test]
    fn control_and_bidi_characters_are_removed() {
        assert_eq!(sanitize("evil\r\nSet-Cookie: x"), "evilSet-Cookie: x");
        assert_eq!(sanitize("a\0b"), "ab");
        assert_eq!(sanitize("photo\u{202E}gpj.exe"), "photogpj.exe");
    }

    #[test]
    fn long_names_are_cut_on_a_character_boundary() {
        let name = "é".repeat(200);
        let cut = sanitize(&name);
        assert!(cut.len() <= MAX_FILENAME_BYTES);
        assert_eq!(cut, "é".repeat(127));
    }

    #[test]
    fn ordinary_names_are_kept() {
        assert_eq!(sanitize("report 2026.pdf"), "report 2026.pdf");
        assert_eq!(sanitize("фото.jpg"), "фото.jpg");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn assert_safe(raw: &str) {
        let name = sanitize(raw);
        assert!(!name.is_empty() && name.len() <= MAX_FILENAME_BYTES, "{raw:?} -> {name:?}");
        assert!(!name.contains(['/', '\\']) && name != "." && name != "..", "{raw:?} -> {name:?}");
        assert!(!name.chars().any(is_hidden_or_control), "{raw:?} -> {name:?}");
        assert_eq!(sanitize(&name), name, "sanitising is idempotent");
    }

    proptest! {
        #[test]
        fn any_string_becomes_a_safe_name(raw in any::<String>()) {
            assert_safe(&raw);
        }

        #[test]
        fn path_like_strings_become_safe_names(raw in r"[a-z./\\\x00-\x1f\u{202e} ]{0,300}") {
            assert_safe(&raw);
        }
    }
}
