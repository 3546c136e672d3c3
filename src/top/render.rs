//! Drawing one frame of `top`: a pure function of a snapshot and the view's state (focus,
//! scrolling, pause), so every panel is tested on a built snapshot without a terminal.

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use ratatui::Frame;

use super::Snapshot;

/// The panels, in the order `tab` visits them.
pub const PANELS: [&str; 5] = ["shards", "servers", "migrations", "locks", "audit"];

/// What the operator chose: which panel has the focus, how far each is scrolled, paused.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub focus: usize,
    pub scroll: [usize; 5],
    pub paused: bool,
    /// Why the last refresh failed, shown until one succeeds.
    pub error: Option<String>,
    /// How old what is on screen is, for the title line.
    pub taken_at: String,
    /// Per panel: why its source failed and how old what it shows is, while it is stale.
    pub stale: [Option<String>; 5],
}

impl View {
    pub fn next_panel(&mut self) {
        self.focus = (self.focus + 1) % PANELS.len();
    }
    pub fn scroll_down(&mut self) {
        self.scroll[self.focus] += 1;
    }
    pub fn scroll_up(&mut self) {
        self.scroll[self.focus] = self.scroll[self.focus].saturating_sub(1);
    }
}

/// A share against its target as a bar: filled to the share, a `|` at the target.
pub fn share_bar(share: f64, target: f64, width: usize) -> String {
    let cell = |pct: f64| {
        ((pct / 100.0) * width as f64)
            .round()
            .clamp(0.0, width as f64) as usize
    };
    let (fill, mark) = (cell(share), cell(target).min(width.saturating_sub(1)));
    (0..width)
        .map(|i| match (i == mark, i < fill) {
            (true, _) => '|',
            (false, true) => '█',
            (false, false) => '·',
        })
        .collect()
}

fn secs(s: f64) -> String {
    if s >= 3600.0 {
        format!("{:.1}h", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.1}m", s / 60.0)
    } else {
        format!("{s:.1}s")
    }
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "-",
    }
}

/// Draws the whole screen.
pub fn draw(f: &mut Frame, snap: &Snapshot, view: &View) {
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Percentage(30),
            Constraint::Percentage(35),
            Constraint::Min(4),
            Constraint::Length(1),
        ])
        .split(f.area());
    let title = format!(
        " shardctl top · {} shards · {} servers · {} migrations in flight · {} locks · {}{}",
        snap.shards.len(),
        snap.servers.len(),
        snap.migrations.iter().filter(|m| m.in_flight).count(),
        snap.locks.len(),
        view.taken_at,
        if view.paused { " · PAUSED" } else { "" }
    );
    f.render_widget(
        Paragraph::new(title).style(Style::default().add_modifier(Modifier::BOLD)),
        rows[0],
    );
    // Servers get a row of their own: the widest panel, and the one a drain is watched by.
    let top = split_h(rows[1], 50);
    let bottom = split_h(rows[3], 55);
    panel(f, top[0], 0, view, shards(snap));
    panel(f, top[1], 3, view, locks(snap));
    panel(f, rows[2], 1, view, servers(snap));
    panel(f, bottom[0], 2, view, migrations(snap));
    panel(f, bottom[1], 4, view, audit(snap));
    let status = match &view.error {
        Some(e) => Line::styled(format!(" {e}"), Style::default().fg(Color::Red)),
        None => Line::from(" q quit · tab next panel · ↑↓/j k scroll · p pause"),
    };
    f.render_widget(Paragraph::new(status), rows[4]);
}

fn split_h(area: Rect, left_pct: u16) -> std::rc::Rc<[Rect]> {
    Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(left_pct), Constraint::Min(10)])
        .split(area)
}

/// A panel's content: header, rows, and each column's width.
struct Panel {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    widths: Vec<Constraint>,
    /// Rows to show in red (a server that does not answer, an expired lock).
    alarms: Vec<bool>,
    empty: &'static str,
}

fn panel(f: &mut Frame, area: Rect, index: usize, view: &View, p: Panel) {
    let focused = view.focus == index;
    let block = Block::default()
        .borders(Borders::ALL)
        .title(match &view.stale[index] {
            None => format!(" {} ({}) ", PANELS[index], p.rows.len()),
            Some(why) => format!(" {} ({}) · STALE: {why} ", PANELS[index], p.rows.len()),
        })
        .border_style(if focused {
            Style::default().fg(Color::Cyan)
        } else {
            Style::default()
        });
    if p.rows.is_empty() {
        f.render_widget(Paragraph::new(format!(" {}", p.empty)).block(block), area);
        return;
    }
    let skip = view.scroll[index].min(p.rows.len().saturating_sub(1));
    let rows = p
        .rows
        .into_iter()
        .zip(p.alarms)
        .skip(skip)
        .map(|(cells, alarm)| {
            // Stored text (owners, audit subjects) escaped: nothing drawn may steer the terminal.
            let row = Row::new(cells.iter().map(|c| crate::types::shown(c)));
            if alarm {
                row.style(Style::default().fg(Color::Red))
            } else {
                row
            }
        });
    let table = Table::new(rows, p.widths)
        .header(Row::new(p.header).style(Style::default().add_modifier(Modifier::BOLD)))
        .block(block);
    f.render_widget(table, area);
}

fn shards(snap: &Snapshot) -> Panel {
    Panel {
        header: vec![
            "shard",
            "state",
            "w",
            "users",
            "share / target",
            "in",
            "out",
        ],
        rows: snap
            .shards
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.state.to_string(),
                    format!("{}", s.weight),
                    s.users.to_string(),
                    format!(
                        "{} {:.1}%/{:.1}%",
                        share_bar(s.share, s.target_share, 10),
                        s.share,
                        s.target_share
                    ),
                    s.moves_in.to_string(),
                    s.moves_out.to_string(),
                ]
            })
            .collect(),
        widths: vec![
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(4),
            Constraint::Length(8),
            Constraint::Length(24),
            Constraint::Length(3),
            Constraint::Length(3),
        ],
        alarms: vec![false; snap.shards.len()],
        empty: "no shards registered",
    }
}

fn servers(snap: &Snapshot) -> Panel {
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    Panel {
        header: vec![
            "shard",
            "server",
            "h",
            "status",
            "io",
            "sql",
            "lag",
            "sess",
            "q/s",
            "writes",
            "reachable",
        ],
        rows: snap
            .servers
            .iter()
            .map(|s| {
                vec![
                    s.shard.clone(),
                    format!("{}:{}", s.host, s.port),
                    s.half.to_string(),
                    s.status.to_string(),
                    yes_no(s.io_running).into(),
                    yes_no(s.sql_running).into(),
                    dash(s.lag_seconds.map(|l| format!("{l}s"))),
                    dash(s.sessions.map(|n| n.to_string())),
                    dash(s.qps.map(|q| format!("{q:.0}"))),
                    // `!`: not what the ring routes to it (a hand-over in progress or cut short).
                    dash(
                        s.takes_writes_for
                            .as_ref()
                            .map(|w| match s.agrees_with_ring {
                                Some(false) => format!("{w}!"),
                                _ => w.clone(),
                            }),
                    ),
                    match &s.error {
                        None => "yes".into(),
                        Some(e) => format!("NO: {e}"),
                    },
                ]
            })
            .collect(),
        widths: vec![
            Constraint::Length(8),
            Constraint::Length(16),
            Constraint::Length(1),
            Constraint::Length(8),
            Constraint::Length(3),
            Constraint::Length(3),
            Constraint::Length(5),
            Constraint::Length(5),
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Min(4),
        ],
        alarms: snap
            .servers
            .iter()
            .map(|s| !s.reachable || s.agrees_with_ring == Some(false))
            .collect(),
        empty: "no shard servers",
    }
}

fn migrations(snap: &Snapshot) -> Panel {
    Panel {
        header: vec!["#", "user", "from → to", "step", "rows", "age", "r/o"],
        rows: snap
            .migrations
            .iter()
            .map(|m| {
                vec![
                    m.migration_id.to_string(),
                    m.user.to_string(),
                    format!("{} → {}", m.from, m.to),
                    if m.in_flight {
                        m.state.clone()
                    } else {
                        format!("last: {}", m.state)
                    },
                    m.rows.to_string(),
                    secs(m.age_seconds),
                    m.read_only_seconds.map(secs).unwrap_or_else(|| "-".into()),
                ]
            })
            .collect(),
        widths: vec![
            Constraint::Length(6),
            Constraint::Length(10),
            Constraint::Length(18),
            Constraint::Length(14),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(6),
        ],
        alarms: vec![false; snap.migrations.len()],
        empty: "none in flight",
    }
}

fn locks(snap: &Snapshot) -> Panel {
    Panel {
        header: vec!["lock", "owner", "age", "left", "token"],
        rows: snap
            .locks
            .iter()
            .map(|l| {
                vec![
                    l.name.clone(),
                    format!("{}@{}", l.owner, l.host),
                    secs(l.age_seconds),
                    if l.expired {
                        "EXPIRED".into()
                    } else {
                        secs(l.remaining_seconds)
                    },
                    l.token.to_string(),
                ]
            })
            .collect(),
        widths: vec![
            Constraint::Min(12),
            Constraint::Length(16),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(7),
        ],
        alarms: snap.locks.iter().map(|l| l.expired).collect(),
        empty: "no locks held",
    }
}

fn audit(snap: &Snapshot) -> Panel {
    Panel {
        header: vec!["at", "operator", "action", "target"],
        rows: snap
            .audit
            .iter()
            .map(|a| {
                // The time of day is enough on a live screen.
                let at = a.at.get(11..19).unwrap_or(&a.at).to_string();
                vec![at, a.operator.clone(), a.action.clone(), a.target.clone()]
            })
            .collect(),
        widths: vec![
            Constraint::Length(8),
            Constraint::Length(12),
            Constraint::Length(22),
            Constraint::Min(8),
        ],
        alarms: vec![false; snap.audit.len()],
        empty: "nothing audited yet",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::directory::{Half, ServerStatus, ShardState};
    use crate::top::{AuditRow, LockRow, MigrationRow, ServerRow, ShardRow};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn screen(snap: &Snapshot, view: &View) -> String {
        let mut t = Terminal::new(TestBackend::new(140, 40)).unwrap();
        t.draw(|f| draw(f, snap, view)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn server(port: u16, reachable: bool) -> ServerRow {
        ServerRow {
            shard: "shard1".into(),
            host: "127.0.0.1".into(),
            port,
            half: if port % 2 == 1 { Half::A } else { Half::B },
            status: ServerStatus::Online,
            reachable,
            error: (!reachable).then(|| "does not answer".into()),
            io_running: reachable.then_some(true),
            sql_running: reachable.then_some(true),
            lag_seconds: reachable.then_some(0),
            sessions: reachable.then_some(3),
            qps: reachable.then_some(120.0),
            takes_writes_for: reachable.then(|| "%2=1>all".into()),
            agrees_with_ring: reachable.then_some(false),
        }
    }

    fn full() -> Snapshot {
        Snapshot {
            errors: Default::default(),
            ring_read_at: None,
            locks_read_at: None,
            shards: vec![ShardRow {
                name: "shard1".into(),
                state: ShardState::Active,
                weight: 1.0,
                users: 1500,
                share: 50.0,
                target_share: 25.0,
                moves_in: 0,
                moves_out: 2,
            }],
            servers: vec![server(3307, true), server(3308, false)],
            migrations: vec![
                MigrationRow {
                    migration_id: 41,
                    user: 1234,
                    from: "shard1".into(),
                    to: "shard3".into(),
                    state: "copying".into(),
                    rows: 52_000,
                    age_seconds: 3.5,
                    read_only_seconds: None,
                    in_flight: true,
                },
                MigrationRow {
                    migration_id: 40,
                    user: 99,
                    from: "shard2".into(),
                    to: "shard3".into(),
                    state: "done".into(),
                    rows: 25,
                    age_seconds: 0.2,
                    read_only_seconds: Some(0.1),
                    in_flight: false,
                },
            ],
            locks: vec![LockRow {
                name: "ACCOUNT_1234_MIGRATE".into(),
                owner: "ops".into(),
                host: "admin1".into(),
                token: 77,
                age_seconds: 3.0,
                remaining_seconds: 0.0,
                expired: true,
            }],
            audit: vec![AuditRow {
                at: "2026-12-01T22:00:00.000000Z".into(),
                operator: "ops".into(),
                action: "rebalance.apply".into(),
                target: "10 moves".into(),
            }],
            refresh_ms: 3.0,
        }
    }

    #[test]
    fn every_panel_shows_its_rows() {
        let s = screen(&full(), &View::default());
        for want in [
            "shards (1)",
            "servers (2)",
            "migrations (2)",
            "locks (1)",
            "audit (1)",
            "50.0%/25.0%",
            "127.0.0.1:3307",
            "copying",
            "last: done",
            "ACCOUNT_1234_MIGRATE",
            "EXPIRED",
            "rebalance.apply",
            "%2=1>all!",
            "q quit",
        ] {
            assert!(s.contains(want), "{want} missing from:\n{s}");
        }
    }

    #[test]
    fn an_unreachable_server_says_so() {
        let s = screen(&full(), &View::default());
        let line = s
            .lines()
            .find(|l| l.contains("127.0.0.1:3308"))
            .expect("the server's row");
        assert!(line.contains("NO: does not answer"), "{line}");
    }

    #[test]
    fn an_empty_federation_draws_empty_panels() {
        let s = screen(&Snapshot::default(), &View::default());
        for want in [
            "no shards registered",
            "no shard servers",
            "none in flight",
            "no locks held",
        ] {
            assert!(s.contains(want), "{want} missing from:\n{s}");
        }
    }

    #[test]
    fn scrolling_pause_and_errors_show() {
        let mut view = View::default();
        view.next_panel();
        view.scroll_down();
        view.paused = true;
        view.error = Some("ring: connecting on ring:3306: refused".into());
        let s = screen(&full(), &view);
        assert!(
            !s.contains("127.0.0.1:3307"),
            "scrolled past the first server:\n{s}"
        );
        assert!(s.contains("127.0.0.1:3308"));
        assert!(s.contains("PAUSED"));
        view.stale[3] = Some("locks read 25s ago: no answer".into());
        assert!(screen(&full(), &view).contains("STALE: locks read 25s ago"));
        assert!(s.contains("connecting on ring:3306: refused"));
        view.scroll_up();
        view.scroll_up();
        assert!(screen(&full(), &view).contains("127.0.0.1:3307"));
    }

    #[test]
    fn the_share_bar_marks_the_target() {
        assert_eq!(share_bar(50.0, 25.0, 8), "██|█····");
        assert_eq!(share_bar(0.0, 100.0, 4), "···|");
    }
}
