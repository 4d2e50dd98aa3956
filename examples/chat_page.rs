//! The chat page's wasm module (loaded by `www/index.html`): the same client code as the
//! terminal client (`chat/client.rs`), in the browser. It connects to `/ws` on the page's
//! own host, shows the connection status, the message list, and sends what is typed.
//!
//! Built for wasm32 and bound with `wasm-bindgen --target web` into `www/pkg/` by
//! `./build.sh demo`.
#![cfg(target_arch = "wasm32")]

#[path = "chat/client.rs"]
mod client;

use client::{Chat, ChatEvent};
use unisock::resume::Position;
use wasm_bindgen::prelude::*;
use web_sys::{Document, HtmlInputElement};

fn document() -> Option<Document> {
    web_sys::window()?.document()
}

/// Shows an event: the status line, or one more line in the message list.
fn render(event: ChatEvent) {
    let Some(doc) = document() else { return };
    match event {
        ChatEvent::Status(status) => {
            if let Some(el) = doc.get_element_by_id("status") {
                el.set_text_content(Some(&status));
            }
        }
        ChatEvent::Line(line) => {
            let (Some(list), Ok(item)) =
                (doc.get_element_by_id("messages"), doc.create_element("li"))
            else {
                return;
            };
            // `<id> says, '...'` is chat; anything else (joined, left) is a notice.
            if !line.contains(" says, '") {
                item.set_class_name("notice");
            }
            item.set_text_content(Some(&line));
            let _ = list.append_child(&item);
            list.set_scroll_top(list.scroll_height());
        }
    }
}

/// The message input, if the page has one.
fn input() -> Option<HtmlInputElement> {
    document()?.get_element_by_id("text")?.dyn_into().ok()
}

/// Sends the input's text when the form is submitted (Enter or the Send button).
fn wire_form(chat: Chat) {
    let Some(form) = document().and_then(|d| d.get_element_by_id("send")) else {
        return;
    };
    let on_submit = Closure::<dyn FnMut(web_sys::Event)>::new(move |ev: web_sys::Event| {
        ev.prevent_default();
        let Some(input) = input() else { return };
        match chat.submit(&input.value()) {
            Ok(()) => input.set_value(""),
            Err(e) => render(ChatEvent::Status(format!("not sent: {e}"))),
        }
    });
    let _ = form.add_event_listener_with_callback("submit", on_submit.as_ref().unchecked_ref());
    // The form lives as long as the page: so does its listener.
    on_submit.forget();
    if let Some(input) = input() {
        input.set_disabled(false);
        let _ = input.focus();
    }
}

/// Where the page keeps its rooms' positions across a reload: the tab's session storage.
const SAVED: &str = "unisock-chat-positions";

/// The positions an earlier page of this tab saved (`ROOM EPOCH OFFSET` lines).
fn saved_positions() -> Vec<(String, Position)> {
    let storage = web_sys::window().and_then(|w| w.session_storage().ok().flatten());
    let Some(Ok(Some(text))) = storage.map(|s| s.get_item(SAVED)) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut words = line.split(' ');
            let room = words.next()?.to_string();
            let epoch = words.next()?.parse().ok()?;
            let offset = words.next()?.parse().ok()?;
            Some((room, Position { epoch, offset }))
        })
        .collect()
}

/// Saves the chat's positions when the page goes (a reload, another page), so the next
/// page of this tab goes on from them.
fn save_on_pagehide(chat: Chat) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let on_hide = Closure::<dyn FnMut()>::new(move || {
        let text: String = chat
            .positions()
            .iter()
            .map(|(room, at)| format!("{room} {} {}\n", at.epoch, at.offset))
            .collect();
        if let Some(storage) = web_sys::window().and_then(|w| w.session_storage().ok().flatten()) {
            let _ = storage.set_item(SAVED, &text);
        }
    });
    let _ = window.add_event_listener_with_callback("pagehide", on_hide.as_ref().unchecked_ref());
    // The page's own listener: it lives as long as the page.
    on_hide.forget();
}

/// Entry point, called by `www/index.html`.
#[wasm_bindgen(start)]
pub fn start() {
    wasm_bindgen_futures::spawn_local(async {
        let location = web_sys::window().map(|w| w.location());
        let host = location
            .as_ref()
            .and_then(|l| l.host().ok())
            .unwrap_or_else(|| "127.0.0.1:8069".into());
        let secure = location.as_ref().and_then(|l| l.protocol().ok()).as_deref() == Some("https:");
        // The page's query goes along: a page cannot set handshake headers, so a server
        // that wants a token (`chat_server --token`) takes it as `?token=`.
        let query = location.and_then(|l| l.search().ok()).unwrap_or_default();
        let url = format!("{}://{host}/ws{query}", if secure { "wss" } else { "ws" });
        let saved = saved_positions();
        if let Ok(chat) = Chat::connect(unisock::WebSocket::new(), &url, &saved, render).await {
            chat.run().await; // returns at once in the browser; the page's events drive it
            save_on_pagehide(chat.clone());
            wire_form(chat);
        }
    });
}
