"""The operator's gas for consumers' relayed messages: a daily budget per consumer and in all.

A relay is refused (429, no transaction sent) once the consumer's budget for the day, or the
operator's budget for every consumer together, is spent; a relay that goes through is charged
the gas its receipt reports. A consumer's budget is spent only by messages that consumer signed,
so nobody can exhaust someone else's; the operator-wide budget bounds what fresh wallets cost.
Withdrawals (revocations, revoke-all, unlink) draw on budgets of their own, so that spending the
day's budget on grants never stops a consumer from withdrawing consent.

Bounds: a budget is checked before the relay and charged after it, so concurrent relays may
overshoot it by at most one transaction's gas each.
"""

from __future__ import annotations

from eth_utils.address import to_checksum_address
from web3.types import TxReceipt

from api.ratelimit import Limit, Limiter
from ledger.chain.relayer import Relayer
from ledger.consent import messages

WITHDRAWALS = frozenset({"RevokeGrant", "RevokeAll", "Unlink"})  # EIP-712 primary types
EVERYONE = "*"


def budgets(message: messages.Message) -> tuple[Limit, Limit]:
    """(the consumer's budget, the operator-wide budget) that ``message`` draws on."""
    if message.kind.primary_type in WITHDRAWALS:
        return Limit.WITHDRAWAL_GAS, Limit.OPERATOR_WITHDRAWAL_GAS
    return Limit.RELAY_GAS, Limit.OPERATOR_RELAY_GAS


class BudgetedRelayer:
    """Relays a consumer's signed message within the day's gas budgets.

    Example:
        >>> BudgetedRelayer(ledger.relayer, limiter).relay(message, signature)
    """

    def __init__(self, relayer: Relayer, limiter: Limiter) -> None:
        self.relayer = relayer
        self.limiter = limiter

    def relay(self, message: messages.Message, signature: bytes) -> TxReceipt:
        """Relays ``message`` and charges its gas.

        Raises:
            LimitExceeded: a budget is spent; nothing was sent.
            LedgerError: whatever ``Relayer.relay`` raises (no gas spent).
        """
        consumer = to_checksum_address(message.consumer)
        own, everyone = budgets(message)
        self.limiter.check(own, consumer)
        self.limiter.check(everyone, EVERYONE)
        receipt = self.relayer.relay(message, signature)
        gas = int(receipt["gasUsed"])
        self.limiter.spend(own, consumer, gas)
        self.limiter.spend(everyone, EVERYONE, gas)
        return receipt
