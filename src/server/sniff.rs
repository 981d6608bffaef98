//! Which protocol a connection speaks, from its first bytes, looked at without taking them
//! (`peek`): a TLS handshake record on a port serving both schemes (`handshake.rs`), HTTP/2's
//! preface on a plaintext one (`front_end.rs`).

use std::time::Duration;

/// Between peeks while fewer bytes than the prefix have come.
const PEEK_RETRY: Duration = Duration::from_millis(1);

/// Whether the connection's first bytes are `prefix` (waits for as many bytes, or fewer that
/// already differ); false when it closes first.
pub async fn opens_with<const N: usize>(conn: &tokio::net::TcpStream, prefix: &[u8; N]) -> std::io::Result<bool> {
    let mut first = [0u8; N];
    loop {
        let n = conn.peek(&mut first).await?;
        if n == 0 || first[..n] != prefix[..n] {
            return Ok(false);
        }
        if n == N {
            return Ok(true);
        }
        tokio::time::sleep(PEEK_RETRY).await;
    }
}
