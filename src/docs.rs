//! Completions and man pages, generated from the clap tree so they never drift from the binary.
//! The committed copies under `completions/` and `man/` are checked by a test.

use std::path::Path;

use clap_complete::Shell;

use crate::cli;

pub const SHELLS: [Shell; 4] = [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::Elvish];

pub fn completion_script(shell: Shell) -> String {
    let mut cmd = cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "shardctl", &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Every generated file: (relative path, contents).
pub fn generated_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = SHELLS
        .iter()
        .map(|s| {
            let name = match s {
                Shell::Bash => "shardctl.bash".to_string(),
                Shell::Zsh => "_shardctl".to_string(),
                Shell::Fish => "shardctl.fish".to_string(),
                other => format!("shardctl.{other}"),
            };
            (format!("completions/{name}"), completion_script(*s))
        })
        .collect();
    let mut cmd = cli::command();
    cmd.build();
    man_pages(&cmd, "shardctl", &mut files);
    files
}

fn man_pages(cmd: &clap::Command, name: &str, files: &mut Vec<(String, String)>) {
    let mut buf = Vec::new();
    let page = clap_mangen::Man::new(cmd.clone().name(name.to_string()));
    if page.render(&mut buf).is_ok() {
        files.push((
            format!("man/{name}.1"),
            String::from_utf8_lossy(&buf).into_owned(),
        ));
    }
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        man_pages(sub, &format!("{name}-{}", sub.get_name()), files);
    }
}

/// Writes every generated file under `root`.
pub fn write_all(root: &Path) -> std::io::Result<()> {
    for (rel, text) in generated_files() {
        let path = root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, text)?;
    }
    Ok(())
}
