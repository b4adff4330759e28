//! `warren key new` and `warren key show`: the namespace key on this machine.

use anyhow::Context;
use warren_core::Settings;
use warren_core::signing;

use super::args::KeyCommand;

/// Runs a `warren key` command; needs no service.
pub fn run(command: &KeyCommand, settings: &Settings) -> anyhow::Result<u8> {
    match command {
        KeyCommand::New { file, force } => {
            let path = match file {
                Some(p) => p.clone(),
                None => signing::key_file(&settings.key_file)
                    .context("no key file named and no home directory: pass --file PATH")?,
            };
            let key = signing::write_new_key(&path, *force)?;
            println!(
                "wrote key {} to {} (mode 0600)",
                key.id_hex(),
                path.display()
            );
            if file.is_some() && settings.key_file != path.display().to_string() {
                println!(
                    "give it to every client and worker of the namespace: WARREN_KEY_FILE={} (or key_file in warren.toml)",
                    path.display()
                );
            }
            Ok(0)
        }
        KeyCommand::Show => {
            let path = signing::key_file(&settings.key_file);
            match settings.keyring()? {
                Some(ring) => {
                    let shown = path.map(|p| p.display().to_string()).unwrap_or_default();
                    println!("key {} in {shown}", ring.current().id_hex());
                    Ok(0)
                }
                None => {
                    let shown = path.map(|p| p.display().to_string()).unwrap_or_default();
                    println!("no key ({shown} does not exist): make one with `warren key new`");
                    Ok(2)
                }
            }
        }
    }
}
