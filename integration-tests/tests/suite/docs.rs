//! The repository's own documents and scripts, as a new user meets them in a
//! fresh clone: every relative link resolves to a file the repository holds,
//! and the long builds of the README's commands show cargo's progress.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// The targets of `[text](target)` links in markdown.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_docs_points_inside_the_repository() {
    let root = repo();
    let mut docs = vec![root.join("README.md"), root.join("BENCHMARKS.md")];
    for entry in std::fs::read_dir(root.join("docs")).expect("docs/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    let mut broken = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).expect("read doc");
        for link in links(&text) {
            let target = link.split('#').next().unwrap_or("");
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let resolved = doc.parent().expect("dir").join(target);
            let inside = resolved
                .canonicalize()
                .is_ok_and(|p| p.starts_with(root.canonicalize().expect("root")));
            if !inside {
                broken.push(format!("{}: {link}", doc.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_commands_show_cargo_progress_instead_of_minutes_of_silence() {
    for script in ["scripts/notebook.sh", "scripts/test.sh"] {
        let text = std::fs::read_to_string(repo().join(script)).expect("script");
        for line in text
            .lines()
            .filter(|l| l.trim_start().starts_with("cargo build"))
        {
            assert!(
                !line.split_whitespace().any(|w| w == "-q" || w == "--quiet"),
                "{script}: `{line}` hides the build's progress"
            );
        }
    }
}
