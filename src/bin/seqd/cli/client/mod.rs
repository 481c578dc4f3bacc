//! `seqd client ...`: a person (or a script, with `--json`) talking to a running daemon. Every
//! command and query of the protocol (`docs/PROTOCOL.md`), assets and symbols by code or id,
//! amounts and prices as decimals at the asset's scale (fetched from the daemon; `--minor` for
//! integer minor units), aligned tables or JSON.
//!
//! Every run connects within `--connect-timeout` and closes the connection on every path (the
//! server then frees it at once rather than at its idle timeout). `--connect` may list a
//! cluster's nodes: the CLI then connects to the first that answers and sends commands to the
//! leader (`seqd::client::ClusterClient`, docs/PROTOCOL.md §17).

pub mod output;
mod refdata;
mod watch;

use clap::{Args, Subcommand};
use output::{events_table, int, order_fields, records_table, text, Table};
use refdata::Catalog;
use seqd::client::follow::address_list;
use seqd::client::{random_request_key, ClientError, ClusterClient, ClusterConfig, Delivered};
use seqd::engine::{
    AccountId, AccountStatus, AssetId, Code, CodeOf, Command, NewOrder, OrderId, OrderType, Side, StpMode, SymbolId,
    SymbolSpec, SymbolStatus, TimeInForce,
};
use seqd::protocol::Message;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long closing may wait for the server to acknowledge (it is told at once; this only
/// bounds the wait for its answer).
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Options of every `seqd client` run.
#[derive(Args, Clone, Debug)]
pub struct ClientOptions {
    /// The daemon's address, HOST:PORT; for a cluster, its nodes' client addresses separated
    /// by commas (`10.0.0.1:7400,10.0.0.2:7400,10.0.0.3:7400`). The CLI connects to the first
    /// that answers; a command refused by a follower (`Error 931`) goes to the leader it names,
    /// and one whose answer was lost is sent again with the same request key (applied at most
    /// once; "applied before" when the first send was).
    #[arg(
        long,
        visible_alias = "addr",
        env = "SEQD_ADDR",
        default_value = "127.0.0.1:7400",
        value_name = "HOST:PORT[,HOST:PORT...]"
    )]
    pub connect: String,
    /// Directory of `ca.pem` and the principal's certificate and key.
    #[arg(long, env = "SEQD_CERTS", default_value = "./data/certs")]
    pub certs: PathBuf,
    /// The principal: certificate `<certs>/<principal>.pem` and key `<principal>.key`.
    #[arg(long, default_value = "admin")]
    pub principal: String,
    /// Print JSON (one document) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Amounts and prices are integer minor units, typed and printed.
    #[arg(long, global = true)]
    pub minor: bool,
    /// Seconds to wait for the connection and the handshake.
    #[arg(long, default_value_t = 3.0)]
    pub connect_timeout: f64,
    /// Seconds a request may spend finding a node that takes it (a leader election, a node
    /// restarting) before it fails.
    #[arg(long, default_value_t = 10.0)]
    pub failover_timeout: f64,
}

/// Flags shared by every new order.
#[derive(Args, Clone, Debug)]
pub struct OrderFlags {
    /// Time in force: gtc, ioc, fok or post-only (market orders: ioc or fok).
    #[arg(long)]
    tif: Option<String>,
    /// Self-trade prevention: cancel-resting, cancel-incoming or cancel-both.
    #[arg(long, default_value = "cancel-incoming")]
    stp: String,
    /// Unique among the account's live orders; 0 = none.
    #[arg(long, default_value_t = 0)]
    client_order_id: u64,
    /// Market and stop-market buys: the most quote to spend, fees included.
    #[arg(long)]
    budget: Option<String>,
}

/// Optional symbol parameters (create-symbol's defaults; update-symbol keeps the current ones).
#[derive(Args, Clone, Debug, Default)]
pub struct SymbolParams {
    /// Smallest order quantity (base).
    #[arg(long)]
    min_qty: Option<String>,
    /// Smallest limit-order notional (quote).
    #[arg(long)]
    min_notional: Option<String>,
    /// Largest order quantity (base).
    #[arg(long)]
    max_qty: Option<String>,
    /// Maker fee, parts per million of the notional.
    #[arg(long)]
    maker_fee_ppm: Option<u32>,
    /// Taker fee, parts per million of the notional.
    #[arg(long)]
    taker_fee_ppm: Option<u32>,
    /// Largest distance of a limit price from the last trade, basis points (0 = off).
    #[arg(long)]
    band_bps: Option<u32>,
}

#[derive(Subcommand, Clone, Debug)]
pub enum ClientCommand {
    /// Round trip to the daemon.
    Ping,
    /// Every asset: id, code, scale.
    Assets,
    /// Every symbol with its spec and status.
    Symbols,
    /// Admin: create an asset with a scale (decimal places) and a code (`BTC`).
    CreateAsset {
        asset: u32,
        scale: u8,
        #[arg(long)]
        code: Option<String>,
    },
    /// Admin: create a symbol; BASE and QUOTE by code or id, TICK a price step (quote), LOT a
    /// quantity step (base). Its code defaults to BASE/QUOTE when both assets have codes.
    CreateSymbol {
        symbol: u32,
        base: String,
        quote: String,
        tick: String,
        lot: String,
        #[arg(long)]
        code: Option<String>,
        #[command(flatten)]
        params: SymbolParams,
    },
    /// Admin: change a symbol's sizes, fees or band (the others are fixed).
    UpdateSymbol {
        symbol: String,
        #[command(flatten)]
        params: SymbolParams,
    },
    /// Admin: halt a symbol (only cancels are accepted).
    Halt { symbol: String },
    /// Admin: resume trading a halted symbol.
    Resume { symbol: String },
    /// Admin: create an account (parent 0 = a root; a child's owner is its parent's).
    CreateAccount {
        account: u64,
        #[arg(long, default_value_t = 0)]
        parent: u64,
        #[arg(long)]
        owner: u64,
    },
    /// Admin: freeze an account (no new orders, withdrawals or outgoing transfers).
    Freeze { account: u64 },
    /// Admin: unfreeze an account.
    Unfreeze { account: u64 },
    /// Admin: credit a deposit, once per external reference.
    Deposit { account: u64, asset: String, amount: String, external_ref: u64 },
    /// Ask to withdraw (holds the amount); its id is the sequence printed.
    Withdraw { account: u64, asset: String, amount: String, client_ref: u64 },
    /// Admin: pay out a pending withdrawal.
    WithdrawApprove { withdrawal_id: u64 },
    /// Admin: release a pending withdrawal's hold.
    WithdrawReject { withdrawal_id: u64 },
    /// A withdrawal's state.
    Withdrawal { withdrawal_id: u64 },
    /// Move available funds between two accounts of one tree, once per (from, client ref).
    Transfer { from: u64, to: u64, asset: String, amount: String, client_ref: u64 },
    /// Place a limit order.
    Limit {
        account: u64,
        symbol: String,
        side: String,
        qty: String,
        price: String,
        #[command(flatten)]
        flags: OrderFlags,
    },
    /// Place a market order (a buy needs --budget).
    Market {
        account: u64,
        symbol: String,
        side: String,
        qty: String,
        #[command(flatten)]
        flags: OrderFlags,
    },
    /// Place a stop-limit order: a limit order at PRICE once the last trade reaches STOP.
    StopLimit {
        account: u64,
        symbol: String,
        side: String,
        qty: String,
        price: String,
        stop: String,
        #[command(flatten)]
        flags: OrderFlags,
    },
    /// Place a stop-market order: a market order once the last trade reaches STOP.
    StopMarket {
        account: u64,
        symbol: String,
        side: String,
        qty: String,
        stop: String,
        #[command(flatten)]
        flags: OrderFlags,
    },
    /// Cancel an order by id.
    Cancel { account: u64, order_id: u64 },
    /// Cancel an order by its client order id.
    CancelClient { account: u64, client_order_id: u64 },
    /// Cancel every live order of an account, or of one symbol.
    CancelAll {
        account: u64,
        #[arg(long)]
        symbol: Option<String>,
    },
    /// Set a resting limit order's price and total quantity.
    Amend { account: u64, order_id: u64, price: String, qty: String },
    /// Balances of an account.
    Balances { account: u64 },
    /// Totals of an account's subtree per asset.
    Subtree { account: u64 },
    /// Live orders of an account.
    Orders { account: u64 },
    /// One live order.
    Order { order_id: u64 },
    /// Book depth of a symbol.
    Depth {
        symbol: String,
        #[arg(long, default_value_t = 10)]
        levels: u16,
    },
    /// Follow a symbol's public market data: its trades and depth changes, as they happen.
    Watch {
        symbol: String,
        /// Stop after this many trades and depth updates (default: until interrupted).
        #[arg(long)]
        count: Option<u64>,
    },
}

pub fn run(options: ClientOptions, request: ClientCommand) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    match runtime.block_on(session(&options, request)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Connects, runs the request, and closes the connection whatever the outcome.
async fn session(options: &ClientOptions, request: ClientCommand) -> Result<(), String> {
    let mut client = connect(options).await?;
    let result = execute(&mut client, options, request).await;
    // Bounded: a dead server cannot hold the CLI; the close itself is sent at once.
    let _ = tokio::time::timeout(CLOSE_WAIT, client.close()).await;
    result
}

async fn connect(options: &ClientOptions) -> Result<ClusterClient, String> {
    let certs = &options.certs;
    let read =
        |name: String| std::fs::read(certs.join(&name)).map_err(|e| format!("{}: {e}", certs.join(name).display()));
    let principal = &options.principal;
    let (ca, cert, key) =
        (read("ca.pem".into())?, read(format!("{principal}.pem"))?, read(format!("{principal}.key"))?);
    let seconds = |value: f64, flag: &str| {
        Duration::try_from_secs_f64(value).map_err(|_| format!("--{flag} {value} is not a number of seconds"))
    };
    let addresses = address_list(&options.connect);
    if addresses.is_empty() {
        return Err("--connect: no address given".into());
    }
    let mut config = ClusterConfig::new(addresses);
    config.connect_timeout = seconds(options.connect_timeout, "connect-timeout")?;
    config.failover_timeout = seconds(options.failover_timeout, "failover-timeout")?;
    match ClusterClient::connect(config, &ca, &cert, &key).await {
        Ok(client) => Ok(client),
        // Each address's error names it; a timeout names the flag that sets it.
        Err(ClientError::Connect(e)) if e.contains("no answer within") => Err(format!("{e} (--connect-timeout)")),
        Err(e) => Err(e.to_string()),
    }
}

fn refused(e: ClientError) -> String {
    match e {
        ClientError::Refused { code, message } => format!("refused ({code}): {message}"),
        e => e.to_string(),
    }
}

async fn execute(client: &mut ClusterClient, options: &ClientOptions, request: ClientCommand) -> Result<(), String> {
    if let ClientCommand::Ping = request {
        let started = Instant::now();
        client.request(&Message::Ping).await.map_err(refused)?;
        let rtt_us = started.elapsed().as_micros();
        return print(options, json!({ "pong": true, "rtt_us": rtt_us }), format!("pong in {rtt_us} µs"));
    }
    let catalog = Catalog::fetch(client.client(), options.minor).await?;
    if let ClientCommand::Watch { symbol, count } = &request {
        let symbol = catalog.symbol(symbol)?;
        return watch::watch(client.client(), &catalog, symbol.spec.symbol, *count, options.json).await;
    }
    match command_of(&request, &catalog)? {
        Some(command) => send_command(client, options, &catalog, command).await,
        None => query(client, options, &catalog, &request).await,
    }
}

/// Sends a command under a new request key (following the leader) and prints its outcome: its
/// events, or that an earlier send of it was applied (then it succeeds: the command took effect).
async fn send_command(
    client: &mut ClusterClient,
    options: &ClientOptions,
    catalog: &Catalog,
    command: Command,
) -> Result<(), String> {
    let request_key = random_request_key();
    let delivered = client.command_with_key(command, request_key).await.map_err(refused)?;
    let (document, human) = describe_delivered(&delivered, client.keyed().then_some(request_key), catalog);
    print(options, document, human)?;
    match delivered {
        Delivered::Applied(outcome) => {
            outcome.rejected().map_or(Ok(()), |code| Err(format!("rejected with code {code}")))
        }
        Delivered::AppliedBefore(_) => Ok(()),
    }
}

/// A command's answer as JSON and as text. `request_key`: the key it was sent with, if any.
fn describe_delivered(delivered: &Delivered, request_key: Option<u64>, catalog: &Catalog) -> (Value, String) {
    let outcome = delivered.outcome();
    let (table, objects) = events_table(&outcome.events, catalog);
    let mut document = json!({ "seq": outcome.seq, "events": objects, "applied_before": delivered.applied_before() });
    if let Some(key) = request_key {
        document["request_key"] = json!(key);
    }
    let human = match delivered {
        Delivered::AppliedBefore(_) => format!(
            "applied before: an earlier send of this command (request key {}) was applied; this one, seq {}, \
             changed nothing",
            request_key.unwrap_or(0),
            outcome.seq
        ),
        Delivered::Applied(_) => format!("accepted, seq {}\n{}", outcome.seq, table.render()),
    };
    (document, human)
}

/// Writes the JSON document or the human text.
fn print(options: &ClientOptions, json: Value, human: String) -> Result<(), String> {
    if options.json {
        println!("{json}");
    } else {
        println!("{human}");
    }
    Ok(())
}

fn print_table(options: &ClientOptions, table: Table) -> Result<(), String> {
    print(options, table.json_rows(), table.render())
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

fn parse_stp(stp: &str) -> Result<StpMode, String> {
    match stp {
        "cancel-resting" => Ok(StpMode::CancelResting),
        "cancel-incoming" => Ok(StpMode::CancelIncoming),
        "cancel-both" => Ok(StpMode::CancelBoth),
        other => Err(format!("stp must be cancel-resting, cancel-incoming or cancel-both, not {other:?}")),
    }
}

fn parse_code(text: &str, of: CodeOf) -> Result<Code, String> {
    Code::parse(text, of).ok_or_else(|| {
        let slash = if of == CodeOf::Symbol { ", /" } else { "" };
        format!("code {text:?}: 1 to 16 of A-Z 0-9 . _ -{slash}")
    })
}

/// A new order of `order_type` from the words typed.
#[allow(clippy::too_many_arguments)]
fn new_order(
    catalog: &Catalog,
    account: u64,
    symbol: &str,
    side: &str,
    qty: &str,
    price: Option<&str>,
    stop: Option<&str>,
    order_type: OrderType,
    flags: &OrderFlags,
) -> Result<Command, String> {
    let view = catalog.symbol(symbol)?;
    let (base, quote) = catalog.symbol_scales(view.spec.symbol);
    let (base, quote) = (base.unwrap_or(0), quote.unwrap_or(0));
    let market = matches!(order_type, OrderType::Market | OrderType::StopMarket);
    let tif = flags.tif.as_deref().unwrap_or(if market { "ioc" } else { "gtc" });
    let quote_amount = |what, text: Option<&str>| text.map_or(Ok(0), |t| catalog.parse(what, t, quote));
    Ok(Command::PlaceOrder(NewOrder {
        account: AccountId(account),
        symbol: view.spec.symbol,
        client_order_id: flags.client_order_id,
        side: parse_side(side)?,
        order_type,
        tif: parse_tif(tif)?,
        stp: parse_stp(&flags.stp)?,
        price: quote_amount("price", price)?,
        stop_price: quote_amount("stop", stop)?,
        qty: catalog.parse("qty", qty, base)?,
        quote_budget: quote_amount("budget", flags.budget.as_deref())?,
    }))
}

/// `spec` with the parameters given; amounts at the symbol's scales.
fn with_params(catalog: &Catalog, mut spec: SymbolSpec, params: &SymbolParams) -> Result<SymbolSpec, String> {
    let (base, quote) = (catalog.scale(spec.base).unwrap_or(0), catalog.scale(spec.quote).unwrap_or(0));
    if let Some(t) = &params.min_qty {
        spec.min_qty = catalog.parse("min-qty", t, base)?;
    }
    if let Some(t) = &params.min_notional {
        spec.min_notional = catalog.parse("min-notional", t, quote)?;
    }
    if let Some(t) = &params.max_qty {
        spec.max_order_qty = catalog.parse("max-qty", t, base)?;
    }
    spec.maker_fee_ppm = params.maker_fee_ppm.unwrap_or(spec.maker_fee_ppm);
    spec.taker_fee_ppm = params.taker_fee_ppm.unwrap_or(spec.taker_fee_ppm);
    spec.price_band_bps = params.band_bps.unwrap_or(spec.price_band_bps);
    Ok(spec)
}

fn create_symbol(
    catalog: &Catalog,
    symbol: u32,
    (base, quote): (&str, &str),
    (tick, lot): (&str, &str),
    code: Option<&str>,
    params: &SymbolParams,
) -> Result<Command, String> {
    let (base, quote) = (catalog.asset(base)?, catalog.asset(quote)?);
    let lot_size = catalog.parse("lot", lot, base.scale)?;
    let spec = SymbolSpec {
        symbol: SymbolId(symbol),
        base: base.asset,
        quote: quote.asset,
        tick_size: catalog.parse("tick", tick, quote.scale)?,
        lot_size,
        min_qty: lot_size,
        min_notional: 0,
        // As many lots as fit, so that the default never refuses a size the book can hold.
        max_order_qty: i64::MAX / lot_size.max(1) * lot_size.max(1),
        maker_fee_ppm: 0,
        taker_fee_ppm: 0,
        price_band_bps: 0,
    };
    let spec = with_params(catalog, spec, params)?;
    let code = match code {
        Some(text) => parse_code(text, CodeOf::Symbol)?,
        None if !base.code.is_empty() && !quote.code.is_empty() => {
            Code::parse(&format!("{}/{}", base.code, quote.code), CodeOf::Symbol).unwrap_or(Code::EMPTY)
        }
        None => Code::EMPTY,
    };
    Ok(if code.is_empty() { Command::CreateSymbol(spec) } else { Command::CreateSymbolWithCode { spec, code } })
}

fn command_of(request: &ClientCommand, catalog: &Catalog) -> Result<Option<Command>, String> {
    use ClientCommand as C;
    let amount = |what, asset: &str, text: &str| -> Result<(AssetId, i64), String> {
        let asset = catalog.asset(asset)?;
        Ok((asset.asset, catalog.parse(what, text, asset.scale)?))
    };
    Ok(Some(match request {
        C::CreateAsset { asset, scale, code: None } => Command::CreateAsset { asset: AssetId(*asset), scale: *scale },
        C::CreateAsset { asset, scale, code: Some(code) } => Command::CreateAssetWithCode {
            asset: AssetId(*asset),
            scale: *scale,
            code: parse_code(code, CodeOf::Asset)?,
        },
        C::CreateSymbol { symbol, base, quote, tick, lot, code, params } => {
            create_symbol(catalog, *symbol, (base, quote), (tick, lot), code.as_deref(), params)?
        }
        C::UpdateSymbol { symbol, params } => {
            Command::UpdateSymbol(with_params(catalog, catalog.symbol(symbol)?.spec, params)?)
        }
        C::Halt { symbol } => {
            Command::SetSymbolStatus { symbol: catalog.symbol(symbol)?.spec.symbol, status: SymbolStatus::Halted }
        }
        C::Resume { symbol } => {
            Command::SetSymbolStatus { symbol: catalog.symbol(symbol)?.spec.symbol, status: SymbolStatus::Trading }
        }
        C::CreateAccount { account, parent, owner } => {
            Command::CreateAccount { account: AccountId(*account), parent: AccountId(*parent), owner: *owner }
        }
        C::Freeze { account } => {
            Command::SetAccountStatus { account: AccountId(*account), status: AccountStatus::Frozen }
        }
        C::Unfreeze { account } => {
            Command::SetAccountStatus { account: AccountId(*account), status: AccountStatus::Active }
        }
        C::Deposit { account, asset, amount: a, external_ref } => {
            let (asset, amount) = amount("amount", asset, a)?;
            Command::Deposit { account: AccountId(*account), asset, amount, external_ref: *external_ref }
        }
        C::Withdraw { account, asset, amount: a, client_ref } => {
            let (asset, amount) = amount("amount", asset, a)?;
            Command::WithdrawRequest { account: AccountId(*account), asset, amount, client_ref: *client_ref }
        }
        C::WithdrawApprove { withdrawal_id } => Command::WithdrawApprove { withdrawal_id: *withdrawal_id },
        C::WithdrawReject { withdrawal_id } => Command::WithdrawReject { withdrawal_id: *withdrawal_id },
        C::Transfer { from, to, asset, amount: a, client_ref } => {
            let (asset, amount) = amount("amount", asset, a)?;
            Command::Transfer { from: AccountId(*from), to: AccountId(*to), asset, amount, client_ref: *client_ref }
        }
        C::Limit { account, symbol, side, qty, price, flags } => {
            new_order(catalog, *account, symbol, side, qty, Some(price), None, OrderType::Limit, flags)?
        }
        C::Market { account, symbol, side, qty, flags } => {
            new_order(catalog, *account, symbol, side, qty, None, None, OrderType::Market, flags)?
        }
        C::StopLimit { account, symbol, side, qty, price, stop, flags } => {
            new_order(catalog, *account, symbol, side, qty, Some(price), Some(stop), OrderType::StopLimit, flags)?
        }
        C::StopMarket { account, symbol, side, qty, stop, flags } => {
            new_order(catalog, *account, symbol, side, qty, None, Some(stop), OrderType::StopMarket, flags)?
        }
        C::Cancel { account, order_id } => {
            Command::CancelOrder { account: AccountId(*account), order_id: OrderId(*order_id) }
        }
        C::CancelClient { account, client_order_id } => {
            Command::CancelByClientId { account: AccountId(*account), client_order_id: *client_order_id }
        }
        C::CancelAll { account, symbol } => {
            let symbol = match symbol {
                Some(symbol) => catalog.symbol(symbol)?.spec.symbol,
                None => SymbolId::ALL,
            };
            Command::CancelAll { account: AccountId(*account), symbol }
        }
        // Amend needs the order's symbol for its scales: `query` reads the order first.
        _ => return Ok(None),
    }))
}

async fn query(
    client: &mut ClusterClient,
    options: &ClientOptions,
    catalog: &Catalog,
    request: &ClientCommand,
) -> Result<(), String> {
    use ClientCommand as C;
    let asset_cell = |asset| text(catalog.asset_name(asset));
    let amount_cell = |minor, asset| text(catalog.show(minor, catalog.scale(asset)));
    match request {
        C::Assets => {
            let mut table = Table::new(&["asset", "code", "scale"]);
            for a in &catalog.assets {
                table.push(vec![int(a.asset), text(a.code.as_string()), int(a.scale)]);
            }
            print_table(options, table)
        }
        C::Symbols => print_table(options, symbols_table(catalog)),
        C::Balances { account } => {
            let answer =
                client.request_all(&Message::QueryBalances { account: AccountId(*account) }).await.map_err(refused)?;
            let Message::Balances { balances, .. } = answer else { return Err(format!("unexpected {answer:?}")) };
            let mut table = Table::new(&["asset", "available", "held", "total"]);
            for b in balances {
                let total = b.available.checked_add(b.held).ok_or("a balance total past i64")?;
                let row = [b.available, b.held, total].map(|v| amount_cell(v, b.asset));
                table.push([vec![asset_cell(b.asset)], row.to_vec()].concat());
            }
            print_table(options, table)
        }
        C::Subtree { account } => {
            let answer = client
                .request_all(&Message::QuerySubtreeTotals { account: AccountId(*account) })
                .await
                .map_err(refused)?;
            let Message::SubtreeTotals { totals, .. } = answer else { return Err(format!("unexpected {answer:?}")) };
            let mut table = Table::new(&["asset", "total"]);
            for t in totals {
                table.push(vec![asset_cell(t.asset), amount_cell(t.total, t.asset)]);
            }
            print_table(options, table)
        }
        C::Orders { account } => {
            let answer = client
                .request_all(&Message::QueryOpenOrders { account: AccountId(*account) })
                .await
                .map_err(refused)?;
            let Message::OpenOrders { orders, .. } = answer else { return Err(format!("unexpected {answer:?}")) };
            let records = orders.iter().map(|o| order_fields(o, catalog)).collect();
            print_table(options, records_table(records, &["order_id"]))
        }
        C::Order { order_id } => {
            let answer =
                client.request(&Message::QueryOrder { order_id: OrderId(*order_id) }).await.map_err(refused)?;
            let Message::OrderInfo { order, .. } = answer else { return Err(format!("unexpected {answer:?}")) };
            print_table(options, records_table(vec![order_fields(&order, catalog)], &[]))
        }
        C::Depth { symbol, levels } => {
            let view = catalog.symbol(symbol)?;
            let answer = client
                .request_all(&Message::QueryDepth { symbol: view.spec.symbol, levels: *levels })
                .await
                .map_err(refused)?;
            let Message::Depth(book) = answer else { return Err(format!("unexpected {answer:?}")) };
            let (base, quote) = catalog.symbol_scales(view.spec.symbol);
            let mut table = Table::new(&["side", "price", "qty", "orders"]);
            let level = |side: &str, l: &seqd::engine::DepthLevel| {
                vec![text(side), text(catalog.show(l.price, quote)), text(catalog.show(l.qty, base)), int(l.orders)]
            };
            // Asks highest first down to the best, then bids from the best: the book as drawn.
            for l in book.asks.iter().rev() {
                table.push(level("ask", l));
            }
            for l in &book.bids {
                table.push(level("bid", l));
            }
            print_table(options, table)
        }
        C::Withdrawal { withdrawal_id } => {
            let w = client.client().withdrawal(*withdrawal_id).await.map_err(refused)?;
            let mut table = Table::new(&["withdrawal_id", "account", "asset", "amount", "client_ref", "status"]);
            table.push(vec![
                int(*withdrawal_id),
                int(w.account),
                asset_cell(w.asset),
                amount_cell(w.amount, w.asset),
                int(w.client_ref),
                text(format!("{:?}", w.status).to_lowercase()),
            ]);
            print_table(options, table)
        }
        C::Amend { account, order_id, price, qty } => {
            let answer =
                client.request(&Message::QueryOrder { order_id: OrderId(*order_id) }).await.map_err(refused)?;
            let Message::OrderInfo { order, .. } = answer else { return Err(format!("unexpected {answer:?}")) };
            let (base, quote) = catalog.symbol_scales(order.symbol);
            let command = Command::AmendOrder {
                account: AccountId(*account),
                order_id: OrderId(*order_id),
                price: catalog.parse("price", price, quote.unwrap_or(0))?,
                qty: catalog.parse("qty", qty, base.unwrap_or(0))?,
            };
            send_command(client, options, catalog, command).await
        }
        other => Err(format!("{other:?} is not a query")),
    }
}

fn symbols_table(catalog: &Catalog) -> Table {
    let mut table = Table::new(&[
        "symbol",
        "code",
        "base",
        "quote",
        "status",
        "tick",
        "lot",
        "min_qty",
        "min_notional",
        "max_qty",
        "maker_ppm",
        "taker_ppm",
        "band_bps",
    ]);
    for s in &catalog.symbols {
        let spec = &s.spec;
        let (base, quote) = (catalog.scale(spec.base), catalog.scale(spec.quote));
        table.push(vec![
            int(spec.symbol),
            text(s.code.as_string()),
            text(catalog.asset_name(spec.base)),
            text(catalog.asset_name(spec.quote)),
            text(format!("{:?}", s.status).to_lowercase()),
            text(catalog.show(spec.tick_size, quote)),
            text(catalog.show(spec.lot_size, base)),
            text(catalog.show(spec.min_qty, base)),
            text(catalog.show(spec.min_notional, quote)),
            text(catalog.show(spec.max_order_qty, base)),
            int(spec.maker_fee_ppm),
            int(spec.taker_fee_ppm),
            int(spec.price_band_bps),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use seqd::client::Outcome;
    use seqd::engine::{Event, RejectReason};

    #[test]
    fn applied_before_is_said_plainly_and_in_json() {
        let catalog = Catalog { assets: Vec::new(), symbols: Vec::new(), minor: false };
        let rejection = Outcome { seq: 12, events: vec![Event::Rejected { reason: RejectReason::AssetExists }] };
        let (document, human) = describe_delivered(&Delivered::AppliedBefore(rejection.clone()), Some(77), &catalog);
        assert_eq!(
            (&document["applied_before"], &document["request_key"], &document["seq"]),
            (&json!(true), &json!(77), &json!(12))
        );
        assert!(human.starts_with("applied before: ") && human.contains("request key 77"), "{human}");

        let (document, human) = describe_delivered(&Delivered::Applied(rejection), None, &catalog);
        assert_eq!(document["applied_before"], json!(false));
        assert!(document.get("request_key").is_none(), "no key was sent");
        assert!(human.starts_with("accepted, seq 12\n"), "{human}");
    }
}
