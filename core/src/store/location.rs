//! Where the setting `store_url` says big values go (see [`super::objects`]):
//! a directory, an S3 bucket, or nowhere (every value in Redis). Pure, so
//! that settings are checked where they are loaded, and a bad URL is named
//! with the forms it may take.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Where the setting `store_url` says big values go; pure, so that settings
/// are checked where they are loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// No store: every value stays in Redis (an empty `store_url`).
    Redis,
    /// A directory every process of the namespace reaches (`file:///DIR`).
    Dir(PathBuf),
    /// A bucket of an S3-compatible server (`s3://BUCKET/PREFIX`), objects
    /// under `PREFIX` (which may be empty).
    S3 {
        /// The bucket's name.
        bucket: String,
        /// Where in the bucket, without leading or trailing `/`.
        prefix: String,
    },
}

impl Location {
    /// Parses a `store_url`, naming it and the forms it may take when it is
    /// none of them.
    pub fn parse(url: &str) -> Result<Self> {
        if url.is_empty() {
            return Ok(Self::Redis);
        }
        let bad = |why: &str| Error::Settings(format!("store_url {url:?} {why}"));
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad(
                    "must name an absolute directory, as in file:///var/lib/warren",
                ));
            }
            return Ok(Self::Dir(PathBuf::from(path)));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            // S3's rules for new buckets: 3-63 lower-case letters, digits,
            // dots and hyphens, starting and ending with a letter or digit.
            let edge =
                |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            let valid = (3..=63).contains(&bucket.len())
                && bucket
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
                && edge(bucket.chars().next())
                && edge(bucket.chars().last());
            if !valid {
                return Err(bad(
                    "must name a bucket of 3-63 lower-case letters, digits, '.' or '-', \
                     as in s3://warren/values",
                ));
            }
            let prefix = prefix.trim_matches('/');
            // An empty prefix (the bucket's root) is one empty part, and fine.
            if !prefix.is_empty()
                && prefix
                    .split('/')
                    .any(|p| p.is_empty() || p == "." || p == "..")
            {
                return Err(bad("has an empty, '.' or '..' part in its prefix"));
            }
            return Ok(Self::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if ["gs://", "az://"].iter().any(|s| url.starts_with(s)) {
            return Err(bad(
                "names a cloud object store this build of warren does not speak yet: \
                 use s3://BUCKET/PREFIX (any S3-compatible server) or file:///DIR",
            ));
        }
        Err(bad(
            "must be file:///DIR (a directory every process of the namespace shares), \
             s3://BUCKET/PREFIX, or empty to keep every value in Redis",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_and_bad_ones_say_what_would_do() {
        assert_eq!(Location::parse("").unwrap(), Location::Redis);
        assert_eq!(
            Location::parse("file:///var/lib/warren").unwrap(),
            Location::Dir(PathBuf::from("/var/lib/warren"))
        );
        let relative = Location::parse("file://var/lib").unwrap_err().to_string();
        assert!(relative.contains("absolute"), "{relative}");
        assert_eq!(
            Location::parse("s3://warren-values/a/b/").unwrap(),
            Location::S3 {
                bucket: "warren-values".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            Location::parse("s3://warren").unwrap(),
            Location::S3 {
                bucket: "warren".into(),
                prefix: String::new()
            }
        );
        for bad in [
            "s3://",
            "s3://Big",
            "s3://ab",
            "s3://-warren",
            "s3://w_x/y",
            "s3://warren/a//b",
            "s3://warren/../x",
        ] {
            let err = Location::parse(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        let gs = Location::parse("gs://bucket/x").unwrap_err().to_string();
        assert!(gs.contains("s3://BUCKET/PREFIX"), "{gs}");
        let odd = Location::parse("/var/lib/warren").unwrap_err().to_string();
        assert!(
            odd.contains("\"/var/lib/warren\"") && odd.contains("empty"),
            "{odd}"
        );
    }
}
