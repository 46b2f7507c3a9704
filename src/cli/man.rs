//! Man pages: one per command (`regsweep man gc` is regsweep-gc(1)), each with the options clap
//! knows and an EXIT STATUS section, printed or written all at once into a folder.

use super::Cli;
use crate::error::{Error, ExitCode};
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

/// The command tree as the pages show it: subcommands named `regsweep-gc` and so on.
fn built() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Roff text with its hyphens as minus signs, so that options copy and paste.
fn roff_text(text: &str) -> String {
    text.replace('\\', "\\\\").replace('-', "\\-")
}

/// One page: clap_mangen's sections, then EXIT STATUS and SEE ALSO.
fn page(cmd: &clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone())
        .source(format!("regsweep {}", env!("CARGO_PKG_VERSION")))
        .manual("regsweep manual");
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    if cmd.has_subcommands() {
        man.render_subcommands_section(out)?;
    }
    writeln!(out, ".SH \"EXIT STATUS\"")?;
    for code in ExitCode::ALL {
        writeln!(
            out,
            ".TP\n\\fB{}\\fR\n{}",
            code.code(),
            roff_text(code.meaning())
        )?;
    }
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    if name != "regsweep" {
        writeln!(out, ".SH \"SEE ALSO\"\n\\fBregsweep\\fR(1)")?;
    }
    // clap_mangen unwraps the version: only a command that has one gets the section.
    if cmd.get_version().is_some() || cmd.get_long_version().is_some() {
        man.render_version_section(out)?;
    }
    Ok(())
}

/// Every page of the tree below `cmd`, with its file name.
fn all_pages(cmd: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_string();
    out.push((format!("{name}.1"), cmd.clone()));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        all_pages(sub, out);
    }
}

/// `regsweep man [COMMAND...]` prints one page; with `out_dir`, writes every page there.
pub(super) fn run(words: &[String], out_dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let top = built();
    if let Some(dir) = out_dir {
        let mut pages = Vec::new();
        all_pages(&top, &mut pages);
        for (file, cmd) in &pages {
            let mut text = Vec::new();
            page(cmd, &mut text)?;
            let path = dir.join(file);
            crate::output::write_whole(&path, &text).map_err(|e| Error::io(&path, e))?;
        }
        eprintln!("{} man pages written to {}", pages.len(), dir.display());
        return Ok(ExitCode::Ok);
    }
    let mut cmd = &top;
    for w in words {
        cmd = cmd.find_subcommand(w).ok_or_else(|| {
            let known: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
            Error::Usage(format!(
                "man {}: no such command; pages exist for {}",
                words.join(" "),
                known.join(", ")
            ))
        })?;
    }
    let mut text = Vec::new();
    page(cmd, &mut text)?;
    match std::io::stdout().write_all(&text) {
        // `| head` closing the pipe is no error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::Ok),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The manual's synopsis (docs/gc.md) lists every option of every command (clap knows
    /// them all; the synopsis is where an operator looks one up).
    #[test]
    fn the_synopsis_names_every_option() {
        let gc = include_str!("../../docs/gc.md");
        let usage = gc.split("## Synopsis").nth(1).expect("a Synopsis section");
        // The first code block that is a synopsis.
        let block = (usage.split("```").skip(1).step_by(2))
            .find(|b| b.trim_start().starts_with("regsweep "))
            .expect("a synopsis block");
        // Each command's lines, from `regsweep NAME` to the next command; and the groups
        // (`STORAGE = ...`) the lines name, from their definition to the next one.
        let mut entries: Vec<(String, String)> = Vec::new();
        for line in block.lines() {
            let t = line.trim_start();
            if let Some(rest) = t.strip_prefix("regsweep ") {
                entries.push((rest.to_string(), String::new()));
            } else if let Some((name, _)) = t.split_once(" = ")
                && name.chars().all(|c| c.is_ascii_uppercase())
            {
                entries.push((format!("={name}"), String::new()));
            }
            if let Some(last) = entries.last_mut() {
                last.1.push_str(line);
                last.1.push('\n');
            }
        }
        let groups: Vec<(String, String)> = (entries.iter())
            .filter_map(|(h, t)| Some((h.strip_prefix('=')?.to_string(), t.clone())))
            .collect();
        let mut commands = vec![(String::new(), built())];
        let mut missing = Vec::new();
        while let Some((path, cmd)) = commands.pop() {
            for sub in cmd.get_subcommands() {
                let p = format!("{path} {}", sub.get_name()).trim().to_string();
                commands.push((p, sub.clone()));
            }
            if cmd.has_subcommands() || ["", "completions", "man"].contains(&path.as_str()) {
                continue;
            }
            let Some((_, text)) = entries.iter().find(|(head, _)| {
                head.strip_prefix(&path)
                    .is_some_and(|r| r.is_empty() || r.starts_with(' '))
            }) else {
                missing.push(format!("regsweep {path}"));
                continue;
            };
            let mut text = text.clone();
            for (name, def) in &groups {
                if text.contains(name.as_str()) {
                    text.push_str(def);
                }
            }
            for arg in cmd.get_arguments().filter(|a| !a.is_global_set()) {
                if let Some(long) = arg.get_long()
                    && !["help", "version"].contains(&long)
                    && !text.contains(&format!("--{long}"))
                {
                    missing.push(format!("regsweep {path} --{long}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "not in the synopsis of docs/gc.md: {missing:#?}"
        );
    }

    /// Every manual page in docs/, the synopsis block of gc.md left out: an option named only
    /// there is listed, not explained.
    fn docs_prose() -> String {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        let mut text = String::new();
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "md") {
                let t = std::fs::read_to_string(&path).unwrap();
                let t = match t.split_once("## Synopsis") {
                    Some((head, rest)) => {
                        let mut blocks = rest.splitn(3, "```");
                        let (before, _, after) = (blocks.next(), blocks.next(), blocks.next());
                        format!("{head}{}{}", before.unwrap_or(""), after.unwrap_or(""))
                    }
                    None => t,
                };
                text.push_str(&t);
            }
        }
        text
    }

    /// `--help`, the man pages and the manual in docs/ name the same options: every option of
    /// every command is on its page and explained somewhere in docs/.
    #[test]
    fn every_option_is_on_its_man_page_and_explained_in_the_docs() {
        let docs = docs_prose();
        let mut pages = Vec::new();
        all_pages(&built(), &mut pages);
        let mut missing = Vec::new();
        for (file, cmd) in &pages {
            let mut text = Vec::new();
            page(cmd, &mut text).unwrap();
            let text = String::from_utf8(text).unwrap();
            for arg in cmd.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if ["help", "version"].contains(&long) || arg.is_hide_set() {
                    continue;
                }
                if !text.contains(&roff_text(&format!("--{long}"))) {
                    missing.push(format!("{file}: --{long}"));
                }
                if !docs.contains(&format!("--{long}")) {
                    missing.push(format!("docs/: --{long} ({file})"));
                }
            }
        }
        missing.sort();
        missing.dedup();
        assert!(missing.is_empty(), "not documented: {missing:#?}");
    }

    /// docs/troubleshooting.md stays complete: a section for every kind of error, a line for
    /// every kind of finding, a row for every exit code.
    #[test]
    fn troubleshooting_names_every_error_finding_and_exit_code() {
        let doc = include_str!("../../docs/troubleshooting.md");
        let mut missing = Vec::new();
        for k in crate::error::ErrorKind::ALL {
            if !doc.contains(&format!("### `{}`", k.word())) {
                missing.push(format!("error section ### `{}`", k.word()));
            }
        }
        for k in crate::model::values::FindingKind::ALL {
            if !doc.contains(&format!("| `{}` |", k.word())) {
                missing.push(format!("finding row | `{}` |", k.word()));
            }
        }
        for c in ExitCode::ALL {
            if !doc.contains(&format!("| {} |", c.code())) {
                missing.push(format!("exit code row | {} |", c.code()));
            }
        }
        assert!(
            missing.is_empty(),
            "docs/troubleshooting.md lacks {missing:#?}"
        );
    }

    #[test]
    fn every_page_has_its_options_and_exit_status() {
        let mut pages = Vec::new();
        all_pages(&built(), &mut pages);
        assert!(pages.iter().any(|(f, _)| f == "regsweep-gc.1"));
        for (file, cmd) in &pages {
            let mut text = Vec::new();
            page(cmd, &mut text).unwrap();
            let text = String::from_utf8(text).unwrap();
            for section in [
                ".SH NAME",
                ".SH SYNOPSIS",
                ".SH OPTIONS",
                ".SH \"EXIT STATUS\"",
            ] {
                assert!(text.contains(section), "{file}: no {section}");
            }
        }
    }
}
