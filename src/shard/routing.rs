//! The routing rule applications follow (PRODUCT.md section 3): the shard's `online` servers,
//! ordered by half, host, port; start at index `user_id mod count`, then the next ones in turn.
//! Pure code, so the rule is tested exactly as documented.

use crate::ring::directory::{Server, ServerStatus};

/// The shard's online servers in routing order: by half, host, port.
pub fn online_in_order(servers: &[Server]) -> Vec<&Server> {
    let mut online: Vec<&Server> = servers
        .iter()
        .filter(|s| s.status == ServerStatus::Online)
        .collect();
    online.sort_by(|a, b| {
        (a.half, &a.addr.host, a.addr.port).cmp(&(b.half, &b.addr.host, b.addr.port))
    });
    online
}

/// The servers to try for `user_id`, first choice first. Empty when none is online.
pub fn candidates(user_id: u64, servers: &[Server]) -> Vec<&Server> {
    let mut online = online_in_order(servers);
    if online.is_empty() {
        return online;
    }
    let start = (user_id % online.len() as u64) as usize;
    online.rotate_left(start);
    online
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::directory::Half;

    fn server(host: &str, port: u16, half: Half, status: ServerStatus) -> Server {
        Server {
            addr: crate::types::HostPort::new(host, port),
            half,
            status,
            capacity_qps: None,
        }
    }

    #[test]
    fn picks_user_mod_count_among_online_servers() {
        let servers = vec![
            server("db2", 3306, Half::B, ServerStatus::Online),
            server("db1", 3306, Half::A, ServerStatus::Online),
            server("db3", 3306, Half::A, ServerStatus::Draining),
        ];
        let order = |uid| -> Vec<String> {
            candidates(uid, &servers)
                .iter()
                .map(|s| s.addr.host.clone())
                .collect()
        };
        assert_eq!(order(10), ["db1", "db2"]);
        assert_eq!(order(11), ["db2", "db1"]);
    }

    #[test]
    fn none_online_means_no_candidate() {
        let servers = vec![server("db1", 1, Half::A, ServerStatus::Offline)];
        assert!(candidates(5, &servers).is_empty());
    }
}
