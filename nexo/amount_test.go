package nexo

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseAmount(t *testing.T) {
	tests := []struct {
		text, cur string
		want      int64
		bad       string // substring of the error, "" when valid
	}{
		{"10.99", "EUR", 1099, ""},
		{"10.9", "EUR", 1090, ""},
		{"10", "EUR", 1000, ""},
		{"0.01", "EUR", 1, ""},
		{"10.990", "EUR", 1099, ""},
		{"1.099e1", "EUR", 1099, ""},
		{"1099E-2", "EUR", 1099, ""},
		{"+5", "EUR", 500, ""},
		{"1500", "JPY", 1500, ""},
		{"1500.0", "JPY", 1500, ""},
		{"2.125", "KWD", 2125, ""},
		{"0.0001", "CLF", 1, ""},
		{"0", "EUR", 0, ""},
		{"92233720368547758.07", "EUR", 0, "too large"},
		{"999999999999999999", "JPY", 999999999999999999, ""},
		{"-1", "EUR", 0, "negative"},
		{"-0.00", "EUR", 0, "negative"},
		{"10.999", "EUR", 0, "more than 2 decimals"},
		{"1.5", "JPY", 0, "more than 0 decimals"},
		{"2.1255", "KWD", 0, "more than 3 decimals"},
		{"1e-7", "EUR", 0, "decimals"},
		{"1e999", "EUR", 0, "too large"},
		{"1e1000", "EUR", 0, "not a decimal"},
		{"10.99", "XYZ", 0, "unknown currency"},
		{"10.99", "eur", 0, "unknown currency"},
		{"10.99", "", 0, "unknown currency"},
		{"", "EUR", 0, "missing"},
		{"1/2", "EUR", 0, "not a decimal"},
		{"10.", "EUR", 0, "not a decimal"},
		{".5", "EUR", 0, "not a decimal"},
		{"0x10", "EUR", 0, "not a decimal"},
		{"1,5", "EUR", 0, "not a decimal"},
		{"NaN", "EUR", 0, "not a decimal"},
	}
	for _, tc := range tests {
		t.Run(tc.text+"_"+tc.cur, func(t *testing.T) {
			got, err := parseAmount("AmountsReq.RequestedAmount", tc.text, tc.cur)
			if tc.bad != "" {
				require.NotNil(t, err)
				require.Equal(t, MessageFormat, err.Condition)
				require.Contains(t, err.Text, "AmountsReq.RequestedAmount")
				require.Contains(t, err.Text, tc.bad)
				return
			}
			require.Nil(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestFormatAmount(t *testing.T) {
	tests := []struct {
		minor int64
		cur   string
		want  string
	}{
		{1099, "EUR", "10.99"},
		{1, "EUR", "0.01"},
		{0, "EUR", "0.00"},
		{1500, "JPY", "1500"},
		{2125, "KWD", "2.125"},
		{5, "BHD", "0.005"},
		{1, "CLF", "0.0001"},
	}
	for _, tc := range tests {
		got, err := formatAmount(tc.minor, tc.cur)
		require.NoError(t, err)
		require.Equal(t, tc.want, got)
		back, e := parseAmount("x", got, tc.cur)
		require.Nil(t, e)
		require.Equal(t, tc.minor, back)
	}
	_, err := formatAmount(-1, "EUR")
	require.Error(t, err)
	_, err = formatAmount(1, "ZZZ")
	require.Error(t, err)
}

func TestCurrencyExponent(t *testing.T) {
	for cur, exp := range map[string]int{"EUR": 2, "USD": 2, "GBP": 2, "CHF": 2, "JPY": 0, "KRW": 0, "KWD": 3, "BHD": 3, "TND": 3, "CLF": 4, "XOF": 0} {
		got, ok := CurrencyExponent(cur)
		require.True(t, ok, cur)
		require.Equal(t, exp, got, cur)
	}
	for _, cur := range []string{"", "EU", "EURO", "XYZ", "UR ", "R A"} {
		_, ok := CurrencyExponent(cur)
		require.False(t, ok, cur)
	}
}

// listedTwoDecimal is the list CurrencyExponent searched before its switch
// (each code followed by a space).
const listedTwoDecimal = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB " +
	"BOV BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD " +
	"EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD " +
	"KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK " +
	"MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD " +
	"SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH " +
	"USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG "

// Every three-letter code has the exponent it had when the two-decimal
// currencies were a list.
func TestCurrencyExponentIsTheList(t *testing.T) {
	listed := func(code string) (int, bool) {
		switch code {
		case "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
			"UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF":
			return 0, true
		case "BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND":
			return 3, true
		case "CLF", "UYW":
			return 4, true
		}
		if strings.Contains(listedTwoDecimal, code+" ") {
			return 2, true
		}
		return 0, false
	}
	n := 0
	for a := 'A'; a <= 'Z'; a++ {
		for b := 'A'; b <= 'Z'; b++ {
			for c := 'A'; c <= 'Z'; c++ {
				code := string([]rune{a, b, c})
				e, ok := CurrencyExponent(code)
				le, lok := listed(code)
				if e != le || ok != lok {
					t.Fatalf("CurrencyExponent(%s) = %d, %v; the list says %d, %v", code, e, ok, le, lok)
				}
				if ok && e == 2 {
					n++
				}
			}
		}
	}
	if n != strings.Count(listedTwoDecimal, " ") {
		t.Fatalf("%d two-decimal codes, the list has %d", n, strings.Count(listedTwoDecimal, " "))
	}
}
