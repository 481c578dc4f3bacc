//! What a principal must hold to send a message: the rule the gateway applies before a
//! command reaches the input ring. The gateway owns the grants (certificate to principal to
//! account subtrees) and the account tree; this only says which accounts a request touches.

use super::message::Message;
use crate::engine::{AccountId, Command, OrderId};

/// The permission a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Authority {
    /// Anyone connected: handshake, ping, public market data, and server-to-client messages.
    Public,
    /// An admin principal: reference data, account creation and status, deposits, withdrawal
    /// decisions (refused with `AdminOnly`).
    Admin,
    /// A grant covering this account (refused with `Unauthorized`).
    Account(AccountId),
    /// Grants covering both accounts: a transfer must stay inside what the principal controls.
    Accounts(AccountId, AccountId),
    /// The owner of this order: the gateway looks the order up and answers `NotFound` when its
    /// account is not granted, so the answer does not reveal other principals' orders.
    OrderOwner(OrderId),
}

impl Authority {
    pub fn of_command(command: &Command) -> Authority {
        match *command {
            Command::CreateAsset { .. }
            | Command::CreateSymbol(_)
            | Command::CreateAssetWithCode { .. }
            | Command::CreateSymbolWithCode { .. }
            | Command::UpdateSymbol(_)
            | Command::SetSymbolStatus { .. }
            | Command::CreateAccount { .. }
            | Command::SetAccountStatus { .. }
            | Command::Deposit { .. }
            | Command::WithdrawApprove { .. }
            | Command::WithdrawReject { .. } => Authority::Admin,
            Command::WithdrawRequest { account, .. }
            | Command::CancelOrder { account, .. }
            | Command::CancelByClientId { account, .. }
            | Command::CancelAll { account, .. }
            | Command::AmendOrder { account, .. } => Authority::Account(account),
            Command::PlaceOrder(order) => Authority::Account(order.account),
            Command::Transfer { from, to, .. } => Authority::Accounts(from, to),
        }
    }

    pub fn of_message(message: &Message) -> Authority {
        match message {
            Message::Command(command) | Message::KeyedCommand { command, .. } => Authority::of_command(command),
            Message::QueryBalances { account }
            | Message::QuerySubtreeTotals { account }
            | Message::QueryOpenOrders { account } => Authority::Account(*account),
            Message::QueryOrder { order_id } => Authority::OrderOwner(*order_id),
            _ => Authority::Public,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{AssetId, SymbolId};

    #[test]
    fn commands_need_admin_or_their_accounts() {
        assert_eq!(
            Authority::of_command(&Command::Deposit {
                account: AccountId(1),
                asset: AssetId(1),
                amount: 5,
                external_ref: 1
            }),
            Authority::Admin
        );
        assert_eq!(
            Authority::of_command(&Command::CancelAll { account: AccountId(4), symbol: SymbolId::ALL }),
            Authority::Account(AccountId(4))
        );
        assert_eq!(
            Authority::of_command(&Command::Transfer {
                from: AccountId(1),
                to: AccountId(2),
                asset: AssetId(1),
                amount: 5,
                client_ref: 1
            }),
            Authority::Accounts(AccountId(1), AccountId(2))
        );
        assert_eq!(
            Authority::of_message(&Message::QueryOrder { order_id: OrderId(9) }),
            Authority::OrderOwner(OrderId(9))
        );
        assert_eq!(Authority::of_message(&Message::Subscribe { symbol: SymbolId(1) }), Authority::Public);
    }
}
