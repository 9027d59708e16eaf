// 1 - (1 - x)^t for x in [0, 1] and t >= 1, to f32 precision also where (1 - x)^t is close to 1
// (the bias corrections of the first steps, where 1 - beta2^t is 1e-3): ln(1 - x) by its series
// for small x, then -expm1(t ln(1 - x)) by its series for small arguments.
fn one_minus_pow(x: f32, t: f32) -> f32 {
    if (x >= 1.0) {
        return 1.0;
    }
    var l = log(1.0 - x);
    if (x < 0.25) {
        // ln(1 - x) = -(x + x^2/2 + x^3/3 + ...): 17 terms leave under 1e-10 of the sum.
        var power = x;
        var sum = 0.0;
        for (var k = 1; k <= 17; k = k + 1) {
            sum = sum + power / f32(k);
            power = power * x;
        }
        l = -sum;
    }
    let z = t * l;
    if (z > -0.5) {
        // -expm1(z) = -(z + z^2/2! + z^3/3! + ...): 11 terms for |z| < 0.5.
        var term = z;
        var sum = 0.0;
        for (var k = 2; k <= 12; k = k + 1) {
            sum = sum + term;
            term = term * z / f32(k);
        }
        return -sum;
    }
    return 1.0 - exp(z);
}
