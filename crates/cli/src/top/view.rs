//! Drawing one [`Snapshot`] with ratatui widgets: a title line, then the
//! peers, channels, pools and recoveries tables, then a key line.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::Frame;

use super::snapshot::{ChannelRow, Snapshot};
use crate::util::human;

/// Channels of a mask as `0,3,7` (`-` for none).
fn mask(m: u64) -> String {
    if m == 0 {
        return "-".into();
    }
    (0..64u32).filter(|c| m >> c & 1 == 1).map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

/// A rate as `950/s`, `12.3k/s`, `4.1M/s`; `-` when there is none.
pub fn per_s(r: Option<f64>) -> String {
    match r {
        None => "-".into(),
        Some(r) if r >= 1e6 => format!("{:.1}M/s", r / 1e6),
        Some(r) if r >= 1e4 => format!("{:.1}k/s", r / 1e3),
        Some(r) => format!("{r:.0}/s"),
    }
}

fn num(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

fn table<'a>(title: String, header: &[&'a str], rows: Vec<Row<'a>>, widths: &[u16]) -> Table<'a> {
    // The last column (errors, who is slow, classes) takes what is left.
    let last = widths.len().saturating_sub(1);
    let widths = widths.iter().enumerate().map(|(i, &w)| if i == last { Constraint::Fill(1) } else { Constraint::Length(w) });
    Table::new(rows, widths)
        .header(Row::new(header.to_vec()).style(bold()))
        .block(Block::bordered().title(title))
        .column_spacing(1)
}

/// Draws `s` over the whole frame; `status` goes on the last line (e.g. why
/// the latest read failed).
pub fn draw(f: &mut Frame, s: &Snapshot, status: &str) {
    let rings: usize = s.channels.iter().map(|c| c.rings.len().max(1)).sum();
    let classes: usize = s.pools.len();
    let rec_lines = 3 + s.recoveries.errors.len().min(4);
    let [title, peers, channels, pools, recoveries, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(s.peers.len() as u16 + 3),
        Constraint::Length(rings as u16 + 3),
        Constraint::Length(classes as u16 + 3),
        Constraint::Length(rec_lines as u16 + 2),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let live = s.peers.iter().filter(|p| p.alive != "no" && p.state == "Attached").count();
    f.render_widget(
        Paragraph::new(Line::styled(
            format!("numashm top {}  ({live} live of {} entries, max {}; rates over {:.1} s)", s.path, s.peers.len(), s.max_peers, s.seconds),
            bold(),
        )),
        title,
    );
    draw_peers(f, s, peers);
    draw_channels(f, s, channels);
    draw_pools(f, s, pools);
    draw_recoveries(f, s, recoveries);
    f.render_widget(Paragraph::new(format!("q / Esc / Ctrl-C: quit   {status}")), keys);
}

fn draw_peers(f: &mut Frame, s: &Snapshot, area: Rect) {
    let rows = s
        .peers
        .iter()
        .map(|p| {
            Row::new(vec![
                p.entry.to_string(),
                p.pid.to_string(),
                p.name.clone().unwrap_or_default(),
                p.state.clone(),
                p.alive.to_string(),
                mask(p.produces),
                mask(p.consumes),
                per_s(p.sent_rate),
                per_s(p.received_rate),
                num(p.sent),
                num(p.received),
                num(p.dropped),
                num(p.held),
                num(p.lent),
                p.error.clone().unwrap_or_default(),
            ])
        })
        .collect();
    let header = ["entry", "pid", "name", "state", "alive", "produces", "consumes", "sent", "received", "sent tot", "recv tot", "dropped", "held", "lent", "error"];
    f.render_widget(table("peers".into(), &header, rows, &[5, 8, 16, 9, 7, 8, 8, 9, 9, 10, 10, 8, 6, 6, 40]), area);
}

fn channel_rows(c: &ChannelRow) -> Vec<Row<'static>> {
    let consumer = match &c.consumer {
        Ok(e) => format!("{e} ({})", c.consumer_alive.unwrap_or("?")),
        Err(e) => format!("error: {e}"),
    };
    let slow = c.slow.clone().unwrap_or_default();
    if c.rings.is_empty() {
        return vec![Row::new(vec![c.channel.to_string(), consumer, "-".into(), String::new(), String::new(), String::new(), per_s(c.rate), slow])];
    }
    c.rings
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let first = i == 0;
            let fill = r.fill.map_or_else(|| r.error.clone().map_or("-".into(), |e| format!("error: {e}")), |f| format!("{f}/{}", r.capacity));
            let returns = match (r.returns_waiting, r.returns_capacity) {
                (Some(w), Some(cap)) => format!("{w}/{cap}"),
                _ => "-".into(),
            };
            Row::new(vec![
                if first { c.channel.to_string() } else { String::new() },
                if first { consumer.clone() } else { String::new() },
                format!("{}{}", r.producer, if r.bound { "" } else { " (unbound)" }),
                fill,
                num(r.held),
                returns,
                per_s(r.rate),
                if first { slow.clone() } else { String::new() },
            ])
        })
        .collect()
}

fn draw_channels(f: &mut Frame, s: &Snapshot, area: Rect) {
    let rows = s.channels.iter().flat_map(channel_rows).collect();
    let header = ["channel", "consumer", "producer", "ring fill", "held", "returns", "rate", "slow"];
    f.render_widget(table("channels".into(), &header, rows, &[7, 12, 14, 11, 6, 9, 9, 50]), area);
}

fn draw_pools(f: &mut Frame, s: &Snapshot, area: Rect) {
    let rows = s
        .pools
        .iter()
        .map(|p| {
            let pages = match &p.pages {
                Ok(v) if v.is_empty() => "none".into(),
                Ok(v) => v.iter().map(|(n, c)| format!("n{n}:{c}")).collect::<Vec<_>>().join(" "),
                Err(e) => format!("error: {e}"),
            };
            let extents = p.extents.as_ref().map_or_else(|e| format!("error: {e}"), |(n, max)| format!("{n}/{max}"));
            let classes = p
                .classes
                .iter()
                .map(|(name, c)| format!("{name} {}/{} lent {}", c.owned.saturating_add(c.lent), c.slots, c.lent))
                .collect::<Vec<_>>()
                .join(", ");
            let classes = if p.class_errors.is_empty() { classes } else { format!("{classes} ({} bad)", p.class_errors.len()) };
            Row::new(vec![p.entry.to_string(), human(p.committed as u64), human(p.reserved as u64), extents, pages, classes])
        })
        .collect();
    let header = ["entry", "committed", "reserved", "extents", "pages per node", "classes: in use/slots, lent"];
    f.render_widget(table("pools".into(), &header, rows, &[5, 10, 9, 8, 18, 70]), area);
}

fn draw_recoveries(f: &mut Frame, s: &Snapshot, area: Rect) {
    let r = &s.recoveries;
    let list = |v: Vec<String>| if v.is_empty() { "none".to_string() } else { v.join(", ") };
    let mut lines = vec![
        Line::from(format!(
            "bad returns: {} ({})   slots reclaimed from dead consumers: {}",
            r.bad_returns,
            per_s(r.bad_returns_rate),
            r.lost_to_dead_consumers
        )),
        Line::from(format!(
            "dead entries: {}   channels with a dead consumer: {}",
            list(r.dead.iter().map(|(e, pid)| format!("{e} (pid {pid})")).collect()),
            list(r.dead_consumers.iter().map(ToString::to_string).collect())
        )),
        Line::from(format!(
            "rings replaced (slots of a gone consumer reclaimed): {}",
            list(r.rings_replaced.iter().map(|(c, p)| format!("channel {c} of entry {p}")).collect())
        )),
    ];
    lines.extend(r.errors.iter().take(4).map(|e| Line::from(format!("error: {e}"))));
    f.render_widget(Paragraph::new(lines).block(Block::bordered().title("recoveries")), area);
}
