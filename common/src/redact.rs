//! Credentials never leave in messages: the password of a URL's user info
//! (`scheme://user:password@host`) is masked wherever a URL is quoted — errors of the object
//! stores, of the log, task failures, job results and the lines the CLI prints.

/// `text` without a backtrace some libraries append to their messages when
/// `RUST_BACKTRACE` is set (from a line `stack backtrace:` or a frame line `0: …` on).
pub fn without_backtrace(text: &str) -> &str {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if at > 0 && (t.starts_with("stack backtrace:") || t.starts_with("0: ")) {
            return text[..at].trim_end();
        }
        at += line.len();
    }
    text
}

/// `text` with the password of every URL's user info replaced by `***`.
pub fn credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority runs to the first `/`, `?`, `#` or whitespace.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            credentials("GET http://user:s3cr3t@127.0.0.1:1/bucket?x=1 failed"),
            "GET http://user:***@127.0.0.1:1/bucket?x=1 failed"
        );
        assert_eq!(
            credentials("a s3://k:p@h/x and https://u:p:q@h"),
            "a s3://k:***@h/x and https://u:***@h"
        );
        // No password, no user info, no URL: unchanged.
        for s in [
            "http://user@host/p",
            "file:///tmp/t",
            "plain text: a@b",
            "x://",
        ] {
            assert_eq!(credentials(s), s);
        }
    }
}

#[cfg(test)]
mod backtrace_tests {
    #[test]
    fn backtraces_are_cut_off() {
        let msg = "Json error: Truncated record\n   0: with_backtrace\n             at src/error.rs:482:25\n   1: from";
        assert_eq!(
            super::without_backtrace(msg),
            "Json error: Truncated record"
        );
        assert_eq!(super::without_backtrace("a\nstack backtrace:\n  0: x"), "a");
        assert_eq!(super::without_backtrace("one line"), "one line");
        assert_eq!(
            super::without_backtrace("0: not a frame at the start"),
            "0: not a frame at the start"
        );
    }
}
