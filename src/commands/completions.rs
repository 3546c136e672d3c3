use serde::Serialize;

use crate::cli::CompletionsArgs;
use crate::error::Result;
use crate::output::{Outcome, Report};

#[derive(Serialize)]
struct Completions {
    shell: String,
    script: String,
}

impl Report for Completions {
    fn human(&self) -> String {
        self.script.clone()
    }
}

pub fn run(args: &CompletionsArgs) -> Result<Outcome> {
    Outcome::of(Completions {
        shell: args.shell.to_string(),
        script: crate::docs::completion_script(args.shell),
    })
}
