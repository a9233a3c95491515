//! The server side of the libpq protocol as Neon's services speak it: startup (SSL refused),
//! cleartext password, simple and extended query flows. Message encoding is `pgwire`'s.

use std::collections::BTreeMap;
use std::io;

use bytes::{Bytes, BytesMut};
use pgwire::messages::copy::{CopyData, CopyDone, CopyOutResponse};
use pgwire::messages::data::{
    DataRow, FieldDescription, NoData, ParameterDescription, RowDescription,
};
use pgwire::messages::extendedquery::{BindComplete, CloseComplete, ParseComplete};
use pgwire::messages::response::{
    CommandComplete, ErrorResponse, ReadyForQuery, TransactionStatus,
};
use pgwire::messages::startup::{Authentication, ParameterStatus};
use pgwire::messages::{
    DecodeContext, PgWireBackendMessage as Be, PgWireFrontendMessage as Fe, ProtocolVersion,
    SslNegotiationMetaMessage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// PostgreSQL's OID of `text`.
const TEXT_OID: u32 = 25;

/// One client connection.
pub(crate) struct Conn {
    stream: TcpStream,
    read_buf: BytesMut,
    write_buf: BytesMut,
    ctx: DecodeContext,
    /// Text of the last Parse, run on Execute.
    parsed: Option<String>,
    /// Whether the query being answered came as a simple Query (needs ReadyForQuery).
    simple: bool,
}

fn protocol_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl Conn {
    pub(crate) fn new(stream: TcpStream) -> Conn {
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            read_buf: BytesMut::with_capacity(8192),
            write_buf: BytesMut::with_capacity(64 * 1024),
            ctx: DecodeContext::new(ProtocolVersion::PROTOCOL3_0),
            parsed: None,
            simple: true,
        }
    }

    async fn read_frontend(&mut self) -> io::Result<Option<Fe>> {
        loop {
            if let Some(msg) = Fe::decode(&mut self.read_buf, &self.ctx).map_err(protocol_error)? {
                return Ok(Some(msg));
            }
            if self.stream.read_buf(&mut self.read_buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// Queues a backend message.
    pub(crate) fn send(&mut self, msg: Be) -> io::Result<()> {
        msg.encode(&mut self.write_buf).map_err(protocol_error)
    }

    /// Writes the queued messages.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        self.stream.write_all(&self.write_buf).await?;
        self.write_buf.clear();
        self.stream.flush().await
    }

    /// Writes raw bytes (already encoded messages), bypassing the queue.
    pub(crate) async fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads the startup packet, refusing SSL and GSS encryption. `None` when the client
    /// went away or sent a cancel request.
    pub(crate) async fn startup(&mut self) -> io::Result<Option<BTreeMap<String, String>>> {
        loop {
            match self.read_frontend().await? {
                None | Some(Fe::CancelRequest(_)) => return Ok(None),
                Some(Fe::SslNegotiation(SslNegotiationMetaMessage::None)) => {
                    self.ctx.awaiting_frontend_ssl = false;
                }
                Some(Fe::SslNegotiation(_)) => {
                    // "N": no encryption; the client goes on in clear text.
                    self.write_raw(b"N").await?;
                }
                Some(Fe::Startup(startup)) => {
                    self.ctx.awaiting_frontend_startup = false;
                    return Ok(Some(startup.parameters));
                }
                Some(other) => {
                    return Err(protocol_error(format!("unexpected {other:?} at startup")));
                }
            }
        }
    }

    /// Asks for a cleartext password when `expected` is set and checks it. On success sends
    /// AuthenticationOk, `client_encoding` and ReadyForQuery, as Neon's services do. On
    /// failure sends the ErrorResponse they send (`XX000`, `Unauthorized: …`) and returns
    /// false.
    pub(crate) async fn authenticate(&mut self, expected: Option<&str>) -> io::Result<bool> {
        if let Some(expected) = expected {
            self.send(Be::Authentication(Authentication::CleartextPassword))?;
            self.flush().await?;
            let password = match self.read_frontend().await? {
                Some(Fe::PasswordMessageFamily(p)) => {
                    p.into_password().map_err(protocol_error)?.password
                }
                None => return Ok(false),
                Some(other) => {
                    return Err(protocol_error(format!(
                        "expected a password, got {other:?}"
                    )));
                }
            };
            if password != expected {
                self.error("XX000", "Unauthorized: invalid token")?;
                self.flush().await?;
                return Ok(false);
            }
        }
        self.send(Be::Authentication(Authentication::Ok))?;
        self.send(Be::ParameterStatus(ParameterStatus::new(
            "client_encoding".into(),
            "UTF8".into(),
        )))?;
        self.ready()?;
        self.flush().await?;
        Ok(true)
    }

    /// Queues an ErrorResponse.
    pub(crate) fn error(&mut self, code: &str, message: &str) -> io::Result<()> {
        self.send(Be::ErrorResponse(ErrorResponse::new(vec![
            (b'S', "ERROR".into()),
            (b'V', "ERROR".into()),
            (b'C', code.into()),
            (b'M', message.into()),
        ])))
    }

    fn ready(&mut self) -> io::Result<()> {
        self.send(Be::ReadyForQuery(ReadyForQuery::new(
            TransactionStatus::Idle,
        )))
    }

    /// Answers protocol chatter and returns the next query to run: the text of a simple Query
    /// or of an Execute of the last Parse. `None` when the client leaves.
    pub(crate) async fn next_query(&mut self) -> io::Result<Option<String>> {
        loop {
            let Some(msg) = self.read_frontend().await? else {
                return Ok(None);
            };
            match msg {
                Fe::Query(q) => {
                    self.simple = true;
                    return Ok(Some(q.query));
                }
                Fe::Parse(p) => {
                    self.parsed = Some(p.query);
                    self.send(Be::ParseComplete(ParseComplete::new()))?;
                }
                Fe::Describe(_) => {
                    self.send(Be::ParameterDescription(ParameterDescription::new(
                        Vec::new(),
                    )))?;
                    self.send(Be::NoData(NoData::new()))?;
                }
                Fe::Bind(_) => self.send(Be::BindComplete(BindComplete::new()))?,
                Fe::Close(_) => self.send(Be::CloseComplete(CloseComplete::new()))?,
                Fe::Execute(_) => {
                    self.simple = false;
                    return Ok(Some(self.parsed.clone().unwrap_or_default()));
                }
                Fe::Sync(_) => {
                    self.ready()?;
                    self.flush().await?;
                }
                Fe::Flush(_) => self.flush().await?,
                Fe::Terminate(_) => return Ok(None),
                other => return Err(protocol_error(format!("unexpected {other:?}"))),
            }
        }
    }

    /// Ends the answer to a query: ReadyForQuery after a simple Query (Sync does it in the
    /// extended flow), then flushes.
    pub(crate) async fn end_query(&mut self) -> io::Result<()> {
        if self.simple {
            self.ready()?;
        }
        self.flush().await
    }

    /// Queues a RowDescription of text columns.
    pub(crate) fn row_description(&mut self, columns: &[&str]) -> io::Result<()> {
        let fields = columns
            .iter()
            .map(|name| FieldDescription::new((*name).into(), 0, 0, TEXT_OID, -1, -1, 0))
            .collect();
        self.send(Be::RowDescription(RowDescription::new(fields)))
    }

    /// Queues a DataRow of text values.
    pub(crate) fn data_row(&mut self, values: &[&str]) -> io::Result<()> {
        let values: Vec<Option<&str>> = values.iter().copied().map(Some).collect();
        self.data_row_nullable(&values)
    }

    /// Queues a DataRow of text values, `None` being SQL NULL (length -1).
    pub(crate) fn data_row_nullable(&mut self, values: &[Option<&str>]) -> io::Result<()> {
        let mut data = BytesMut::new();
        for value in values {
            match value {
                Some(value) => {
                    data.extend_from_slice(&(value.len() as i32).to_be_bytes());
                    data.extend_from_slice(value.as_bytes());
                }
                None => data.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        self.send(Be::DataRow(DataRow::new(data, values.len() as i16)))
    }

    /// Reads and drops whatever the client sends until it leaves (a server that never answers).
    pub(crate) async fn wait_until_closed(&mut self) -> io::Result<()> {
        while self.read_frontend().await?.is_some() {}
        Ok(())
    }

    /// Queues CommandComplete.
    pub(crate) fn command_complete(&mut self, tag: &str) -> io::Result<()> {
        self.send(Be::CommandComplete(CommandComplete::new(tag.into())))
    }

    /// Queues CopyOutResponse (text format, no columns, as the pageserver sends).
    pub(crate) fn copy_out_response(&mut self) -> io::Result<()> {
        self.send(Be::CopyOutResponse(CopyOutResponse::new(0, 0, Vec::new())))
    }

    /// Encodes one CopyData message into a new buffer.
    pub(crate) fn encode_copy_data(chunk: Bytes) -> io::Result<BytesMut> {
        let mut buf = BytesMut::with_capacity(chunk.len() + 5);
        Be::CopyData(CopyData::new(chunk))
            .encode(&mut buf)
            .map_err(protocol_error)?;
        Ok(buf)
    }

    /// Queues CopyDone.
    pub(crate) fn copy_done(&mut self) -> io::Result<()> {
        self.send(Be::CopyDone(CopyDone::new()))
    }
}
