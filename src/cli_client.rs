//! `seqd client ...`: a person at a terminal talking to a running daemon. Amounts, prices and
//! quantities are integer minor units (the units of `journal/FORMAT.md`).

use clap::Subcommand;
use seqd::client::{Client, ClientError};
use seqd::engine::{Command, NewOrder, OrderType, Side, StpMode, TimeInForce};
use seqd::protocol::Message;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Round trip to the daemon.
    Ping,
    /// Balances of an account.
    Balances { account: u64 },
    /// Totals of an account's subtree per asset.
    Subtree { account: u64 },
    /// Live orders of an account.
    Orders { account: u64 },
    /// Book depth of a symbol.
    Depth {
        symbol: u32,
        #[arg(long, default_value_t = 10)]
        levels: u16,
    },
    /// Admin: create an asset with a scale (decimal places).
    CreateAsset { asset: u32, scale: u8 },
    /// Admin: create an account (parent 0 = a root).
    CreateAccount {
        account: u64,
        #[arg(long, default_value_t = 0)]
        parent: u64,
        #[arg(long)]
        owner: u64,
    },
    /// Admin: credit a deposit, once per external reference.
    Deposit { account: u64, asset: u32, amount: i64, external_ref: u64 },
    /// Place a limit order (GTC unless --ioc/--fok/--post-only).
    Place {
        account: u64,
        symbol: u32,
        side: String,
        price: i64,
        qty: i64,
        #[arg(long, default_value_t = 0)]
        client_order_id: u64,
        #[arg(long, default_value = "gtc")]
        tif: String,
    },
    /// Cancel an order.
    Cancel { account: u64, order_id: u64 },
}

fn parse_side(side: &str) -> Result<Side, String> {
    match side {
        "buy" => Ok(Side::Buy),
        "sell" => Ok(Side::Sell),
        other => Err(format!("side must be buy or sell, not {other:?}")),
    }
}

fn parse_tif(tif: &str) -> Result<TimeInForce, String> {
    match tif {
        "gtc" => Ok(TimeInForce::Gtc),
        "ioc" => Ok(TimeInForce::Ioc),
        "fok" => Ok(TimeInForce::Fok),
        "post-only" => Ok(TimeInForce::PostOnly),
        other => Err(format!("tif must be gtc, ioc, fok or post-only, not {other:?}")),
    }
}

fn command_of(request: &ClientCommand) -> Result<Option<Command>, String> {
    Ok(Some(match *request {
        ClientCommand::CreateAsset { asset, scale } => Command::CreateAsset { asset, scale },
        ClientCommand::CreateAccount { account, parent, owner } => Command::CreateAccount { account, parent, owner },
        ClientCommand::Deposit { account, asset, amount, external_ref } => {
            Command::Deposit { account, asset, amount, external_ref }
        }
        ClientCommand::Place { account, symbol, ref side, price, qty, client_order_id, ref tif } => {
            Command::PlaceOrder(NewOrder {
                account,
                symbol,
                client_order_id,
                side: parse_side(side)?,
                order_type: OrderType::Limit,
                tif: parse_tif(tif)?,
                stp: StpMode::CancelIncoming,
                price,
                stop_price: 0,
                qty,
                quote_budget: 0,
            })
        }
        ClientCommand::Cancel { account, order_id } => Command::CancelOrder { account, order_id },
        _ => return Ok(None),
    }))
}

fn query_of(request: &ClientCommand) -> Message {
    match *request {
        ClientCommand::Balances { account } => Message::QueryBalances { account },
        ClientCommand::Subtree { account } => Message::QuerySubtreeTotals { account },
        ClientCommand::Orders { account } => Message::QueryOpenOrders { account },
        ClientCommand::Depth { symbol, levels } => Message::QueryDepth { symbol, levels },
        _ => Message::Ping,
    }
}

pub fn run(addr: SocketAddr, certs: &Path, principal: &str, request: ClientCommand) -> ExitCode {
    let read =
        |name: String| std::fs::read(certs.join(&name)).map_err(|e| format!("{}: {e}", certs.join(name).display()));
    let files = (|| {
        Ok::<_, String>((read("ca.pem".into())?, read(format!("{principal}.pem"))?, read(format!("{principal}.key"))?))
    })();
    let (ca, cert, key) = match files {
        Ok(files) => files,
        Err(e) => return fail(&e),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let result: Result<(), String> = runtime.block_on(async {
        let mut client = Client::connect(addr, &ca, &cert, &key).await.map_err(|e| e.to_string())?;
        match command_of(&request)? {
            Some(command) => {
                let outcome = client.command(command).await.map_err(|e| e.to_string())?;
                println!("seq {}", outcome.seq);
                for event in &outcome.events {
                    println!("  {event:?}");
                }
                if let Some(code) = outcome.rejected() {
                    return Err(format!("rejected with code {code}"));
                }
            }
            None => match client.request(&query_of(&request)).await {
                Ok(answer) => println!("{answer:?}"),
                Err(ClientError::Refused { code, message }) => return Err(format!("refused ({code}): {message}")),
                Err(e) => return Err(e.to_string()),
            },
        }
        client.close().await;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}
