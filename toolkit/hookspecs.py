"""The hooks a maxrf-bench plugin may implement.

All hooks follow the *register callback* style: the host calls the hook once per plugin
with a ``register`` function, and the plugin calls it once per item it provides.  The host
keeps the bookkeeping (which plugin gave which item, duplicate names), so a plugin never
needs to know about other plugins.

A plugin is any importable object (usually a module) named in the entry-point group
``maxrf_bench`` of its distribution::

    [project.entry-points.maxrf_bench]
    my_method = "my_package.plugin"

and decorated with :data:`maxrf_bench.hookimpl`.
"""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("maxrf_bench")
hookimpl = pluggy.HookimplMarker("maxrf_bench")


@hookspec
def maxrf_bench_register_methods(register):
    """Register super-resolution methods.

    Called once per plugin when the registry is first used.  Call
    ``register(method)`` with a :class:`maxrf_bench.Method` for each method the plugin
    provides.  Names must be unique across all plugins.  Return value is ignored.
    """


@hookspec
def maxrf_bench_register_datasets(register):
    """Register datasets (scans that a benchmark can run on).

    Called once per plugin.  Call ``register(dataset)`` with a
    :class:`maxrf_bench.Dataset` for each dataset.  Loading must be lazy: do the work
    in ``Dataset.load``, not here, so that listing plugins stays fast.
    """


@hookspec
def maxrf_bench_register_metrics(register):
    """Register quality metrics.

    Called once per plugin.  Call ``register(metric)`` with a
    :class:`maxrf_bench.Metric` for each metric.
    """


@hookspec
def maxrf_bench_register_commands(cli):
    """Add sub-commands to the ``maxrf-bench`` click group.

    Called once per plugin when the CLI starts.  ``cli`` is the root
    :class:`click.Group`; use ``@cli.command()`` to add commands.  A command name that
    already exists is refused.
    """
