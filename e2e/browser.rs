//! A real headless Chromium, driven over the DevTools protocol: the tests load console
//! pages, type into forms, read the DOM and take screenshots the way a person's browser
//! would render them.
//!
//! The DevTools protocol is JSON over a WebSocket; the few frame types it needs are
//! written here (a text frame out, masked as RFC 6455 requires of clients; text,
//! continuation, ping and close frames in) rather than adding a WebSocket crate.
#![allow(dead_code)]

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
};

use crate::harness::STARTUP;

/// Chromium: `CHROMIUM_BIN`, else Debian's `chromium` (`make tools` installs it).
pub fn chromium_bin() -> String {
    std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "chromium".into())
}

/// Where the console tests leave their screenshots: `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Browser {
    _child: Child,
    _profile: tempfile::TempDir,
    ws: Ws,
    session: String,
    next_id: u64,
    events: VecDeque<Value>,
}

impl Browser {
    pub async fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(chromium_bin())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1280,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; install it with `make tools` (Debian chromium) or set CHROMIUM_BIN",
                    chromium_bin()
                )
            });
        // Chromium prints the browser's DevTools WebSocket URL on stderr.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = tokio::time::timeout(STARTUP, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.trim().to_string();
                }
            }
            panic!("chromium exited before listening for DevTools");
        })
        .await
        .expect("chromium starts");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let ws = Ws::connect(&url).await;
        let mut browser = Browser {
            _child: child,
            _profile: profile,
            ws,
            session: String::new(),
            next_id: 0,
            events: VecDeque::new(),
        };
        let target = browser
            .call_browser("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = browser
            .call_browser(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser.call("Page.enable", json!({})).await;
        browser
    }

    async fn send(&mut self, method: &str, params: Value, session: bool) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if session {
            msg["sessionId"] = json!(self.session);
        }
        self.ws.send(&msg.to_string()).await;
        loop {
            let reply: Value = serde_json::from_str(&self.ws.recv().await).unwrap();
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {}", reply["error"]);
                return reply["result"].clone();
            }
            if reply.get("method").is_some() {
                self.events.push_back(reply);
            }
        }
    }

    async fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, false).await
    }

    /// A DevTools command on the page.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, true).await
    }

    /// Waits for a page event (e.g. `Page.loadEventFired`).
    pub async fn event(&mut self, method: &str) -> Value {
        let wait = async {
            loop {
                if let Some(i) = self.events.iter().position(|e| e["method"] == method) {
                    return self.events.remove(i).unwrap();
                }
                let e: Value = serde_json::from_str(&self.ws.recv().await).unwrap();
                if e.get("method").is_some() {
                    self.events.push_back(e);
                }
            }
        };
        tokio::time::timeout(STARTUP, wait)
            .await
            .unwrap_or_else(|_| panic!("no {method} from chromium"))
    }

    /// Loads `url` and waits for its load event.
    pub async fn goto(&mut self, url: &str) {
        self.events.clear();
        let nav = self.call("Page.navigate", json!({"url": url})).await;
        assert!(nav.get("errorText").is_none(), "{url}: {nav}");
        self.event("Page.loadEventFired").await;
    }

    /// Evaluates `js` in the page; its value (promises awaited).
    pub async fn eval(&mut self, js: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            r.get("exceptionDetails").is_none(),
            "{js}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Evaluates `js` until it returns something other than null/false, or panics after
    /// `within` naming `what`.
    pub async fn wait_for(&mut self, js: &str, within: Duration, what: &str) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.eval(js).await;
            if !(v.is_null() || v == json!(false)) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: not within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A PNG of the whole page (not only the window) into `screenshot_dir()/name`.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        use base64::Engine;
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let path = screenshot_dir().join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

/// The client end of a WebSocket, enough for the DevTools protocol.
struct Ws {
    read: BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Ws {
    async fn connect(url: &str) -> Ws {
        let rest = url.strip_prefix("ws://").expect("a ws:// URL");
        let (authority, path) = rest.split_once('/').unwrap();
        let stream = TcpStream::connect(authority).await.unwrap();
        let (read, mut write) = stream.into_split();
        write
            .write_all(
                format!(
                    "GET /{path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Key: cG9ydGN1bGxpcy1jb25zb2xl\r\nSec-WebSocket-Version: 13\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let mut read = BufReader::new(read);
        let mut status = String::new();
        read.read_line(&mut status).await.unwrap();
        assert!(
            status.contains(" 101 "),
            "WebSocket upgrade refused: {status}"
        );
        loop {
            let mut line = String::new();
            read.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
        }
        Ws { read, write }
    }

    async fn send(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8]; // FIN, text
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= u16::MAX as usize => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask: [u8; 4] = mask_key();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.write.write_all(&frame).await.unwrap();
    }

    /// The next whole text message (fragments joined; pings answered).
    async fn recv(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.read.read_exact(&mut head).await.unwrap();
            let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
            let len = match head[1] & 0x7f {
                126 => u64::from(self.read.read_u16().await.unwrap()),
                127 => self.read.read_u64().await.unwrap(),
                n => u64::from(n),
            };
            let mut mask = [0u8; 4];
            if head[1] & 0x80 != 0 {
                self.read.read_exact(&mut mask).await.unwrap();
            }
            let mut payload = vec![0u8; len as usize];
            self.read.read_exact(&mut payload).await.unwrap();
            if head[1] & 0x80 != 0 {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            match opcode {
                0x0..=0x2 => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message).unwrap();
                    }
                }
                0x8 => panic!("chromium closed the DevTools connection"),
                0x9 => {
                    // Pong with the same payload (masked, as from any client).
                    let mask = mask_key();
                    let mut pong = vec![0x8a, 0x80 | payload.len() as u8];
                    pong.extend_from_slice(&mask);
                    pong.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
                    self.write.write_all(&pong).await.unwrap();
                }
                _ => {}
            }
        }
    }
}

fn mask_key() -> [u8; 4] {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    n.to_le_bytes()
}
