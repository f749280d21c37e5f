"""Drills: real worker and ingress processes taken through failures (a broker killed, a node lost,
a rebalance under load); selected with `-m drill`."""
