//! What the edge benchmarks share: a plain NGINX reverse proxy with upstream
//! keepalive that the benchmark configures itself, and the CPU time a process
//! spent, split into user and kernel.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// CPU seconds of a process so far, (user, system): where a proxy spends its
/// time, in its own code or in the kernel's TCP stack.
pub fn cpu_seconds(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    (field(11), field(12))
}

/// The summed (user, system) CPU seconds of `pids`.
pub fn cpu_total(pids: &[u32]) -> (f64, f64) {
    pids.iter().map(|p| cpu_seconds(*p)).fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// NGINX's master and its workers.
pub fn nginx_pids(master: u32) -> Vec<u32> {
    let mut pids = vec![master];
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children")) {
        pids.extend(children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    pids
}

/// The engine's userland proxy for a published loopback port, if one runs:
/// read from `/proc`, never signalled.
pub fn docker_proxy_pid(host_port: u16) -> Option<u32> {
    let port = host_port.to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_proxy = args.first().is_some_and(|a| a.ends_with(b"docker-proxy"));
        let on_port = args.windows(2).any(|w| w[0] == b"-host-port" && w[1] == port.as_bytes());
        (is_proxy && on_port).then_some(pid)
    })
}

pub struct Nginx {
    pub child: std::process::Child,
}

impl Drop for Nginx {
    /// SIGTERM to the whole process group (master and workers), SIGKILL if it lingers:
    /// killing only the master would orphan its workers.
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, killpg};
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Starts NGINX in `dir`, proxying `server_name` on `127.0.0.1:listen` to `upstream`.
pub fn start_nginx(dir: &Path, listen: u16, server_name: &str, upstream: std::net::SocketAddr) -> Result<Nginx, Error> {
    let conf = format!(
        "daemon off;\nworker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           upstream fn {{ server {upstream}; keepalive 64; }}\n\
           server {{\n    listen 127.0.0.1:{listen};\n    server_name {server_name};\n\
             location / {{ proxy_pass http://fn; proxy_http_version 1.1; proxy_set_header Connection \"\";\n\
               proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; }}\n  }}\n}}\n",
        d = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let test = Command::new("nginx").arg("-t").arg("-c").arg(&path).arg("-p").arg(dir).output()?;
    if !test.status.success() {
        return Err(format!("nginx -t: {}", String::from_utf8_lossy(&test.stderr)).into());
    }
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()?;
    Ok(Nginx { child })
}

/// Waits until something listens on `127.0.0.1:port`.
pub async fn wait_port(port: u16) -> Result<(), Error> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(format!("nothing listens on 127.0.0.1:{port}").into())
}
