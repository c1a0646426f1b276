//! Finding instances by label in `/proc`: the processes a previous run of the
//! platform started, which are no longer our children.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};

use pilotlight_core::model::{Endpoint, FunctionName, Instance, InstanceId, InstanceState};

pub(crate) const LABEL_PLATFORM: &str = "PILOTLIGHT_PLATFORM";
pub(crate) const LABEL_FUNCTION: &str = "PILOTLIGHT_FUNCTION";
pub(crate) const LABEL_GENERATION: &str = "PILOTLIGHT_GENERATION";

/// The instance id of a process: its pid, which is also its process group.
pub(crate) fn instance_id(pid: i32) -> InstanceId {
    InstanceId::new(format!("pid-{pid}"))
}

/// The pid in an instance id made by [`instance_id`].
pub(crate) fn pid_of(id: &InstanceId) -> Option<i32> {
    id.as_str().strip_prefix("pid-")?.parse().ok().filter(|p| *p > 0)
}

fn environ(pid: i32) -> Option<HashMap<String, String>> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = std::str::from_utf8(kv).ok()?;
                let (k, v) = kv.split_once('=')?;
                Some((k.to_owned(), v.to_owned()))
            })
            .collect(),
    )
}

/// `(state, pgid)` from `/proc/<pid>/stat`.
pub(crate) fn stat(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces; fields follow the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgid = fields.next()?.parse().ok()?;
    Some((state, pgid))
}

/// Whether `pid` still runs (not gone, not a zombie).
pub(crate) fn alive(pid: i32) -> bool {
    matches!(stat(pid), Some((s, _)) if s != 'Z' && s != 'X')
}

/// The labelled process with this pid, if it belongs to `platform`.
pub(crate) fn labelled(pid: i32, platform: &str) -> Option<Instance> {
    let (state, pgid) = stat(pid)?;
    if pgid != pid || state == 'Z' || state == 'X' {
        return None;
    }
    let env = environ(pid)?;
    if env.get(LABEL_PLATFORM).map(String::as_str) != Some(platform) {
        return None;
    }
    let function = FunctionName::new(env.get(LABEL_FUNCTION)?.clone()).ok()?;
    let generation = env.get(LABEL_GENERATION)?.parse().ok()?;
    let port: u16 = env.get("PORT")?.parse().ok()?;
    Some(Instance {
        id: instance_id(pid),
        function,
        generation,
        endpoint: Endpoint::new(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
        state: if state == 'T' { InstanceState::Paused } else { InstanceState::Running },
    })
}

/// Every labelled process group leader of `platform`.
pub(crate) fn scan(platform: &str) -> Vec<Instance> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| labelled(pid, platform))
        .collect()
}
