//! Query strings (`?file=…&limit=…`): split, percent-decoded, and checked against the parameters an
//! endpoint takes, so that a misspelt filter is a 400 rather than a filter silently ignored.

/// The parameters of one request, each given at most once.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses `raw` (the part after `?`, possibly empty). `allowed` names every parameter the
    /// endpoint takes; anything else, a repeated name or a bad `%` escape is an error for a 400.
    pub fn parse(raw: &str, allowed: &[&str]) -> Result<Params, String> {
        let mut params = Vec::new();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(key)?;
            let value = decode(value)?;
            if !allowed.contains(&key.as_str()) {
                return Err(if allowed.is_empty() {
                    format!("unknown parameter {key:?}: this path takes none")
                } else {
                    format!(
                        "unknown parameter {key:?}: this path takes {}",
                        allowed.join(", ")
                    )
                });
            }
            if params.iter().any(|(k, _)| *k == key) {
                return Err(format!("parameter {key:?} given twice"));
            }
            params.push((key, value));
        }
        Ok(Params(params))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// `application/x-www-form-urlencoded` decoding, as browsers and `curl --data-urlencode` send it:
/// `%XX` is a byte and `+` a space. The bytes must be UTF-8.
fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let byte = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad %-escape in {text:?}"))?;
                out.push(byte);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_decoded_and_checked() {
        let p = Params::parse(
            "owner=host%2Da%2F7%2Foh&limit=5&client=a+b",
            &["owner", "limit", "client"],
        )
        .unwrap();
        assert_eq!(p.get("owner"), Some("host-a/7/oh"));
        assert_eq!(p.get("limit"), Some("5"));
        assert_eq!(p.get("client"), Some("a b"));
        assert_eq!(p.get("file"), None);
        assert_eq!(Params::parse("", &[]).unwrap(), Params::default());
        assert_eq!(Params::parse("&&", &["x"]).unwrap(), Params::default());
        assert_eq!(
            Params::parse("file", &["file"]).unwrap().get("file"),
            Some("")
        );
    }

    #[test]
    fn bad_query_strings_say_what_is_wrong() {
        for (raw, allowed, says) in [
            (
                "fiel=ab",
                &["file", "limit"][..],
                "unknown parameter \"fiel\": this path takes file, limit",
            ),
            ("x=1", &[][..], "this path takes none"),
            ("limit=1&limit=2", &["limit"][..], "given twice"),
            ("file=%zz", &["file"][..], "bad %-escape"),
            ("file=%4", &["file"][..], "bad %-escape"),
            ("file=%ff", &["file"][..], "UTF-8"),
        ] {
            let e = Params::parse(raw, allowed).unwrap_err();
            assert!(e.contains(says), "{raw}: {e}");
        }
    }
}
