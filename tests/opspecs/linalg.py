"""Registry entries for shendu/ops/linalg.py: matmul, mm, bmm, dot, outer, einsum, trace, diag."""

from shendu.errors import ArgumentError, DTypeError, ShapeError
from tests.opspecs import ErrorCase, OpSpec, Sample, idx, r

_MATMUL = [
    Sample((r(4), r(4)), desc="1d_1d"),
    Sample((r(3), r(3, 5)), desc="1d_2d"),
    Sample((r(4, 3), r(3)), desc="2d_1d"),
    Sample((r(4, 3), r(3, 5)), desc="2d_2d"),
    Sample((r(3), r(2, 3, 5)), desc="1d_3d"),
    Sample((r(2, 4, 3), r(3)), desc="3d_1d"),
    Sample((r(2, 3, 4, 5), r(5, 2)), desc="4d_2d_linear"),
    Sample((r(4, 5), r(3, 5, 2)), desc="2d_3d"),
    Sample((r(2, 4, 3), r(2, 3, 5)), desc="batched"),
    Sample((r(2, 1, 3, 4), r(5, 4, 2)), desc="bcast_batch"),
    Sample((r(1, 3, 4), r(1, 4, 2)), desc="batch1"),
    Sample((r(1, 3, 4), r(6, 4, 2)), desc="batch1_bcast"),
    Sample((r(3, 2, 4), r(1, 1, 4, 2)), desc="matrix_with_unit_batch"),
    Sample((r(1, 1, 2, 3), r(3)), desc="unit_batch_vec"),
    Sample((r(3, 4), r(4, 1)), desc="col"),
    Sample((r(3, 4), r(4, 5)), grad=(1,), desc="grad_other_only"),
]

_MATMUL_ERR = [
    ErrorCase((r(2, 3), r(4, 5)), exc=ShapeError, match=r"matmul: \(2, 3\) @ \(4, 5\): inner dimensions 3 and 4 "
                                                       "differ"),
    ErrorCase((r(3), r(4)), exc=ShapeError, match=r"inner dimensions 3 and 4"),
    ErrorCase((r(2, 3), r(2)), exc=ShapeError, match=r"matmul: \(2, 3\) @ \(2,\)"),
    ErrorCase((r(2, 3, 4), r(5, 4, 2)), exc=ShapeError, match=r"batch dimensions \(2,\) and \(5,\) cannot be "
                                                              "broadcast"),
    ErrorCase((r(), r(3)), exc=ShapeError, match="matmul: both operands need at least 1 dimension"),
    ErrorCase((r(2, 3), idx(3, 3, 4)), exc=DTypeError, match="matmul: expected operands of the same dtype"),
]


def _einsum(m, eq, *ops):
    return m.einsum(eq, *ops)


_EINSUM = [
    Sample(("ij,jk->ik", r(3, 4), r(4, 5)), desc="mm"),
    Sample(("bij,bjk->bik", r(2, 3, 4), r(2, 4, 5)), desc="bmm"),
    Sample(("ii->i", r(4, 4)), desc="diag"),
    Sample(("ii", r(4, 4)), desc="trace_implicit"),
    Sample(("ij->", r(3, 4)), desc="sum_all"),
    Sample(("i,j->ij", r(3), r(4)), desc="outer"),
    Sample(("...ij,...jk->...ik", r(2, 1, 3, 4), r(5, 4, 2)), desc="ellipsis_bcast"),
    Sample(("...ij,...jk->...ik", r(3, 4), r(2, 4, 5)), desc="ellipsis_uneven"),
    Sample(("bhqd,bhkd->bhqk", r(2, 3, 4, 5), r(2, 3, 6, 5)), desc="attention"),
    Sample(("ij,jk", r(3, 4), r(4, 5)), desc="implicit"),
    Sample(("ij,jk,kl->il", r(2, 3), r(3, 4), r(4, 5)), desc="three_operands"),
    Sample(("ij,jk->ik", [r(3, 4), r(4, 2)]), desc="list"),
    Sample(("ij->ji", r(3, 4)), desc="transpose"),
    Sample(("bi,bi->b", r(5, 3), r(5, 3)), desc="rowwise_dot"),
    Sample(("ij,jk->k", r(3, 4), r(4, 2)), desc="letter_only_in_first"),
    Sample(("ij,ij->ij", r(1, 4), r(3, 4)), desc="size1_bcast"),
    Sample(("iij,jk->ik", r(3, 3, 4), r(4, 2)), desc="repeated_with_other"),
    Sample(("ii,i->i", r(3, 3), r(3)), desc="diag_times_vec"),
    Sample(("...ii->...i", r(2, 3, 3)), desc="batch_diag"),
    Sample(("Ab,bC", r(2, 3), r(3, 4)), desc="uppercase_implicit"),
    Sample((" ij , jk -> ik ", r(2, 3), r(3, 2)), desc="spaces"),
    Sample(("bn,nd->bd", r(1, 3), r(3, 1)), desc="batch1"),
]

_EINSUM_ERR = [
    ErrorCase(("ij,jk->ik", r(2, 3)), exc=ArgumentError, match="subscripts for 2 operand.*but 1 operand"),
    ErrorCase(("ijk->ij", r(2, 3)), exc=ShapeError, match=r"operand 0 has shape \(2, 3\).*name 3"),
    ErrorCase(("ij,jk", r(2, 3), r(4, 5)), exc=ShapeError, match="subscript 'j' has size 4 in operand 1.*size 3"),
    ErrorCase(("ii->i", r(2, 3)), exc=ShapeError, match="subscript 'i' is repeated in operand 0"),
    ErrorCase(("ij->k", r(2, 3)), exc=ArgumentError, match="output subscript 'k'.*does not appear"),
    ErrorCase(("ij->ii", r(2, 3)), exc=ArgumentError, match="output subscript 'i' appears more than once"),
    ErrorCase(("i1", r(2, 3)), exc=ArgumentError, match="invalid subscripts"),
    ErrorCase(("i,i", r(3), idx(3, 3)), exc=DTypeError, match="einsum: expected operands of the same dtype"),
]

SPECS = [
    OpSpec("matmul", lambda m, a, b: m.matmul(a, b), _MATMUL, errors=_MATMUL_ERR),
    OpSpec("matmul_operator", lambda m, a, b: a @ b, _MATMUL[:4] + _MATMUL[9:10]),
    OpSpec("matmul_int", lambda m, a, b: m.matmul(a, b),
           [Sample((idx(5, 3, 4), idx(5, 4, 2)), desc="2d"), Sample((idx(5, 2, 3, 4), idx(5, 4)), desc="3d_1d"),
            Sample((idx(5, 4), idx(5, 4)), desc="1d_1d")],
           differentiable=False),
    OpSpec("mm", lambda m, a, b: m.mm(a, b),
           [Sample((r(4, 3), r(3, 5))), Sample((r(1, 3), r(3, 1)), desc="batch1")],
           errors=[ErrorCase((r(3), r(3, 4)), exc=ShapeError, match=r"mm: expected two 2-D matrices, got shapes "
                                                                   r"\(3,\) and \(3, 4\)"),
                   ErrorCase((r(2, 3, 4), r(4, 5)), exc=ShapeError, match="mm: expected two 2-D"),
                   ErrorCase((r(2, 3), r(4, 5)), exc=ShapeError, match="mm: .*inner dimensions 3 and 4")]),
    OpSpec("bmm", lambda m, a, b: m.bmm(a, b),
           [Sample((r(2, 4, 3), r(2, 3, 5))), Sample((r(1, 1, 3), r(1, 3, 2)), desc="batch1")],
           errors=[ErrorCase((r(2, 3, 4), r(3, 4, 5)), exc=ShapeError, match="bmm: batch sizes 2 and 3 differ"),
                   ErrorCase((r(3, 4), r(4, 5)), exc=ShapeError, match="bmm: expected two 3-D"),
                   ErrorCase((r(2, 3, 4), r(1, 4, 5)), exc=ShapeError, match="does not broadcast"),
                   ErrorCase((r(2, 3, 4), r(2, 3, 5)), exc=ShapeError, match="bmm: .*inner dimensions 4 and 3")]),
    OpSpec("dot", lambda m, a, b: m.dot(a, b),
           [Sample((r(5), r(5))), Sample((r(1), r(1)), desc="len1")],
           errors=[ErrorCase((r(3), r(4)), exc=ShapeError, match="dot: the vectors have lengths 3 and 4"),
                   ErrorCase((r(2, 3), r(3)), exc=ShapeError, match="dot: expected two 1-D")]),
    OpSpec("outer", lambda m, a, b: m.outer(a, b),
           [Sample((r(3), r(4))), Sample((r(1), r(5)), desc="len1")],
           errors=[ErrorCase((r(2, 3), r(3)), exc=ShapeError, match="outer: expected two 1-D")]),
    OpSpec("einsum", _einsum, _EINSUM, errors=_EINSUM_ERR),
    OpSpec("einsum_int", _einsum,
           [Sample(("ij,jk->ik", idx(5, 3, 4), idx(5, 4, 2))), Sample(("ii", idx(5, 3, 3)), desc="trace")],
           differentiable=False),
    OpSpec("trace", lambda m, x: m.trace(x),
           [Sample((r(4, 4),)), Sample((r(3, 5),), desc="wide"), Sample((r(5, 2),), desc="tall"),
            Sample((r(1, 1),), desc="1x1")],
           errors=[ErrorCase((r(3),), exc=ShapeError, match=r"trace: expected a 2-D matrix, got shape \(3,\)")]),
    OpSpec("diag", lambda m, x, k=0: m.diag(x, k),
           [Sample((r(4),), desc="vec"), Sample((r(3), 2), desc="vec_above"), Sample((r(3), -1), desc="vec_below"),
            Sample((r(4, 4),), desc="mat"), Sample((r(3, 5), 1), desc="wide_above"),
            Sample((r(3, 5), -2), desc="wide_below"), Sample((r(5, 3), -1), desc="tall_below"),
            Sample((r(3, 3), 5), desc="offset_past_end")],
           errors=[ErrorCase((r(2, 3, 4),), exc=ShapeError, match="diag: expected a 1-D or 2-D tensor")]),
]
